"""What the fake upstream says: reply and reasoning texts, their pieces, token counts.

Pure functions of the request body, no I/O and no HTTP, so a test can import them and predict
to the character what a client must reassemble (:func:`expected_reply`,
:func:`expected_reasoning`) and which usage numbers it must see (:func:`prompt_tokens`). The
model field's ``;k=v`` parameters are parsed here too, because ``words`` shapes the reply;
which scenario the name means is ``scenarios.parse_model``'s business, as only that module
knows the table.
"""

from __future__ import annotations

import math
import re
from typing import Any

_LOREM = (
    "lorem", "ipsum", "café", "dolor", "sit", "中文", "amet", "naïve", "consectetur", "🙂",
    "adipiscing", "élan", "elit", "déjà", "vu", "sed", "über", "tempor", "señor", "incididunt",
)  # fmt: skip
_TOKEN = re.compile(r" ?\S+|\s")
_LONG_TOKEN = 5


def _split_model(model: str) -> tuple[str, dict[str, str]]:
    """Split ``"name;k=v;..."`` into the name as written and its parameters (which scenario
    the name means is for ``scenarios.parse_model`` to say)."""
    name, *parts = (model or "").split(";")
    params: dict[str, str] = {}
    for part in parts:
        key, _, value = part.partition("=")
        if key.strip():
            params[key.strip()] = value.strip()
    return name.strip(), params


def _int_param(params: dict[str, str], key: str, default: int) -> int:
    """Parse a non-negative int parameter; ValueError becomes a 400 for the client."""
    if key not in params:
        return default
    value = int(params[key])
    if value < 0:
        raise ValueError(f"{key} must be >= 0")
    return value


def _float_param(params: dict[str, str], key: str, default: float) -> float:
    """Parse a non-negative float parameter; ValueError becomes a 400 for the client."""
    if key not in params:
        return default
    value = float(params[key])
    if not value >= 0 or math.isinf(value):
        raise ValueError(f"{key} must be a finite number >= 0")
    return value


def _message_text(message: Any) -> str:
    """Text of one message: string content, or the text parts of a multi-part content list."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _last_message_text(body: dict) -> str:
    messages = body.get("messages")
    return _message_text(messages[-1]) if isinstance(messages, list) and messages else ""


def split_pieces(text: str) -> list[str]:
    """Cut text the way tokens look: a word with its leading space; long words in 2-3 chars."""
    pieces: list[str] = []
    for token in _TOKEN.findall(text):
        while len(token) > _LONG_TOKEN:
            size = 3 if len(pieces) % 2 == 0 else 2
            pieces.append(token[:size])
            token = token[size:]
        pieces.append(token)
    return pieces


def _full_reply(body: dict, index: int) -> str:
    """The untruncated reply; only the last message, `words` and the index matter."""
    _, params = _split_model(str(body.get("model", "")))
    words = _int_param(params, "words", 12)
    said = _last_message_text(body)[:200]
    tag = f"[choice {index}] " if index > 0 else ""
    lorem = " ".join(_LOREM[(i + 3 * index) % len(_LOREM)] for i in range(words))
    return (
        f"{tag}Hello from the Sluice demo upstream! You said: «{said}».\n"
        f"{lorem}\u2028Fin — déjà vu 🙂"
    )


def _max_tokens(body: dict) -> int | None:
    value = body.get("max_tokens", body.get("max_completion_tokens"))
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _reply_pieces(body: dict, index: int) -> tuple[list[str], str]:
    """Pieces actually sent for a choice, and its finish_reason (one piece = one token)."""
    pieces = split_pieces(_full_reply(body, index))
    limit = _max_tokens(body)
    if limit is not None and len(pieces) > limit:
        return pieces[:limit], "length"
    return pieces, "stop"


def expected_reply(body: dict, index: int = 0) -> str:
    """The exact text a client must reassemble for choice `index` (after max_tokens)."""
    return "".join(_reply_pieces(body, index)[0])


def expected_reasoning(body: dict) -> str:
    """The reasoning_content the ``reasoning`` scenario streams before the answer."""
    said = _last_message_text(body)[:40]
    return f"Thinking about «{said}»… this is canned demo text, no model is thinking 🤔."


def prompt_tokens(body: dict) -> int:
    """A deterministic stand-in for a tokenizer, so tests can predict usage numbers."""
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    return sum(len(_message_text(m).split()) for m in messages) + 3 * len(messages) + 3
