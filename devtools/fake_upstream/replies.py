"""What the fake upstream says: texts, tool calls, structured output, refusals, logprobs.

Pure functions of the request body, no I/O and no HTTP, so a test can import them and predict
to the character what a client must reassemble (:func:`expected_reply`,
:func:`expected_tool_calls`, :func:`expected_refusal`, :func:`expected_reasoning`,
:func:`expected_logprobs`) and which usage numbers it must see (:func:`prompt_tokens`; one
completion token per piece). ``_answer`` is the single decision of what a choice says, which
the wire module then frames. The model field's ``;k=v`` parameters are parsed here too,
because ``words`` and ``calls`` shape the answer, and so are the three names that change what
is said rather than how (``echo``, ``refusal``, ``tools``); which scenario any other name
means is ``scenarios.parse_model``'s business, as only that module knows the table.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass
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
    """Text of one message: string content, or the text parts of a multi-part content list
    (image, audio and file parts carry no text a tokenizer would count as words here)."""
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


_ATTACHMENTS = (("image_url", "image"), ("input_audio", "audio clip"), ("file", "file"))


def _attachments_note(message: Any) -> str:
    """`` [1 image, 1 file]`` for the non-text parts of a message, so a test can prove an
    image (audio, file) part reached the upstream; empty when there are none."""
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return ""
    types = [part.get("type") for part in content if isinstance(part, dict)]
    counts = [(types.count(kind), noun) for kind, noun in _ATTACHMENTS]
    notes = [f"{n} {noun}{'s' if n > 1 else ''}" for n, noun in counts if n]
    return f" [{', '.join(notes)}]" if notes else ""


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


def _scenario_name(body: dict) -> str:
    """The model name as written: ``echo``, ``refusal`` and ``tools`` change what is said,
    so this module reads them itself (they are also rows of ``scenarios.SCENARIOS``)."""
    return _split_model(str(body.get("model", "")))[0]


def _messages(body: dict) -> list:
    messages = body.get("messages")
    return messages if isinstance(messages, list) else []


def _trailing_tool_results(body: dict) -> list[str]:
    """The contents of the tool messages that end the conversation (the results of the calls
    the model made last), oldest first; empty when the last message is no tool message."""
    results: list[str] = []
    for message in reversed(_messages(body)):
        if not (isinstance(message, dict) and message.get("role") == "tool"):
            break
        results.append(_message_text(message))
    return results[::-1]


def _full_reply(body: dict, index: int) -> str:
    """The untruncated text reply; only the last message (or the tool results ending the
    conversation), `words`, the index, ``response_format`` and the ``echo`` name matter."""
    if _scenario_name(body) == "echo":
        return json.dumps({k: v for k, v in body.items() if k != "messages"}, sort_keys=True)
    fmt = body.get("response_format")
    fmt_type = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt_type == "json_schema":
        spec = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else {}
        schema = spec.get("schema") if isinstance(spec.get("schema"), dict) else {}
        return _compact_json(schema_value(schema, "answer", schema))
    text = _prose_reply(body, index)
    if fmt_type == "json_object":
        return _compact_json({"answer": text})
    return text


def _prose_reply(body: dict, index: int) -> str:
    _, params = _split_model(str(body.get("model", "")))
    words = _int_param(params, "words", 12)
    tag = f"[choice {index}] " if index > 0 else ""
    lorem = " ".join(_LOREM[(i + 3 * index) % len(_LOREM)] for i in range(words))
    results = _trailing_tool_results(body)
    if results:
        heard = " ".join(f"The tool said: «{result[:200]}»." for result in results)
    else:
        messages = _messages(body)
        note = _attachments_note(messages[-1]) if messages else ""
        heard = f"You said: «{_last_message_text(body)[:200]}»{note}."
    return f"{tag}Hello from the Sluice demo upstream! {heard}\n{lorem}\u2028Fin — déjà vu 🙂"


def _compact_json(value: Any) -> str:
    """How OpenAI writes generated JSON (tool arguments, structured output): no spaces."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _max_tokens(body: dict) -> int | None:
    value = body.get("max_tokens", body.get("max_completion_tokens"))
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


# --------------------------------------------------------------------------- JSON Schema values

_PLACES = {"city", "location", "place", "town", "destination"}
_FORMATS = {
    "date-time": "2025-01-01T12:00:00Z",
    "date": "2025-01-01",
    "time": "12:00:00",
    "email": "demo@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def _resolve(schema: dict, root: dict, depth: int) -> dict:
    """Follow local ``$ref``s (``#/$defs/X``, ``#/definitions/X``) as Pydantic writes them."""
    while isinstance(schema.get("$ref"), str) and depth < 32:
        target: Any = root
        for part in schema["$ref"].removeprefix("#").strip("/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) and part else target
        schema = target if isinstance(target, dict) else {}
        depth += 1
    return schema


def _clamp(value: float, schema: dict) -> float:
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(low, int | float) and value < low:
        value = low
    if isinstance(high, int | float) and value > high:
        value = high
    return value


def schema_value(schema: Any, name: str = "value", root: Any = None, depth: int = 0) -> Any:
    """A deterministic value valid for a (simple) JSON Schema, for tool arguments and
    structured output: ``const``, else ``enum``'s first value; the first non-null branch of
    ``anyOf``/``oneOf`` and of a type list; an object gets every property of ``properties``
    (nothing more, so ``additionalProperties: false`` holds); an array ``minItems`` items
    (none by default); a string "Paris" for a property named city/location/place/town/
    destination, an example of its ``format``, else ``"<name>-value"``; integer 1, number
    1.5 (both moved into ``minimum``/``maximum``); boolean true; null None."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 16:
        return f"{name}-value"
    schema = _resolve(schema, root if isinstance(root, dict) else {}, depth)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        branches = [b for b in schema.get(key) or () if isinstance(b, dict)]
        if branches:
            chosen = next((b for b in branches if b.get("type") != "null"), branches[0])
            return schema_value(chosen, name, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {key: schema_value(sub, key, root, depth + 1) for key, sub in properties.items()}
    if kind == "array":
        count = schema.get("minItems") if isinstance(schema.get("minItems"), int) else 0
        return [schema_value(schema.get("items"), name, root, depth + 1) for _ in range(count)]
    if kind == "integer":
        return int(_clamp(1, schema))
    if kind == "number":
        return _clamp(1.5, schema)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if name.lower() in _PLACES:
        return "Paris"
    return _FORMATS.get(str(schema.get("format")), f"{name}-value")


# --------------------------------------------------------------------------- tool calls

ARGUMENT_PIECE = 4
"""Tool arguments and structured output stream in pieces of this many characters (the last
one shorter), so a stream can be cut in the middle of a JSON document."""

BUILTIN_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city (the fake upstream's own tool).",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
"""What the ``tools`` scenario calls when the request defines no tools."""


def split_json(text: str) -> list[str]:
    """Cut generated JSON (or custom tool input) into ARGUMENT_PIECE-character pieces."""
    return [text[i : i + ARGUMENT_PIECE] for i in range(0, len(text), ARGUMENT_PIECE)]


@dataclass(frozen=True)
class _ToolCall:
    """One call the fake makes: ``type`` "function" (``text`` is its arguments JSON) or
    "custom" (``text`` is its free-form input)."""

    type: str
    name: str
    text: str


def _tool_name(tool: Any) -> tuple[str, str] | None:
    """(type, name) of a tools entry, or None for entries the fake cannot call."""
    if not isinstance(tool, dict) or tool.get("type", "function") not in ("function", "custom"):
        return None
    kind = str(tool.get("type", "function"))
    spec = tool.get(kind)
    name = spec.get("name") if isinstance(spec, dict) else None
    return (kind, name) if isinstance(name, str) and name else None


def _make_call(tool: dict | None, kind: str, name: str) -> _ToolCall:
    if kind == "custom":
        return _ToolCall("custom", name, f"Input for {name} from the Sluice demo upstream.")
    spec = (tool or {}).get("function") or {}
    parameters = spec.get("parameters") if isinstance(spec, dict) else None
    arguments = schema_value(parameters, name) if isinstance(parameters, dict) else {}
    # arguments are always a JSON object, even for a schema that says nothing
    return _ToolCall(
        "function", name, _compact_json(arguments if isinstance(arguments, dict) else {})
    )


def _planned_calls(body: dict) -> list[_ToolCall]:
    """The calls the model makes, or [] when it answers with text: see the scenarios
    docstring (tools and tool_choice, ``calls``, parallel_tool_calls, the tool round trip)."""
    tools = [t for t in body.get("tools") or () if _tool_name(t) is not None]
    if not tools and _scenario_name(body) == "tools":
        tools = [BUILTIN_TOOL]
    choice = body.get("tool_choice")
    if not tools or choice == "none" or _trailing_tool_results(body):
        return []
    by_name = {_tool_name(t): t for t in tools}
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
        kind = str(choice["type"])
        spec = choice.get(kind)
        name = str(spec.get("name", "")) if isinstance(spec, dict) else ""
        return [_make_call(by_name.get((kind, name)), kind, name)]
    _, params = _split_model(str(body.get("model", "")))
    count = _int_param(params, "calls", 1)
    if body.get("parallel_tool_calls") is False:
        count = min(count, 1)
    chosen = [tools[i % len(tools)] for i in range(count)]
    return [_make_call(t, *(_tool_name(t) or ("function", ""))) for t in chosen]


def _call_message(call: _ToolCall, call_id: str) -> dict:
    """A call in the non-streamed message's (and a client's assembled) shape."""
    if call.type == "custom":
        return {"id": call_id, "type": "custom", "custom": {"name": call.name, "input": call.text}}
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.text},
    }


# --------------------------------------------------------------------------- answers

REFUSAL_TEXT = "I'm sorry, I can't help with that request."
"""What the ``refusal`` scenario refuses with (before max_tokens)."""


@dataclass(frozen=True)
class _Answer:
    """What one choice says: ``kind`` "content", "refusal" or "tool_calls"; `pieces` are
    the content or refusal tokens sent, `calls` each call with its argument pieces sent
    (all after max_tokens, which cuts them as it cuts text: finish_reason "length")."""

    kind: str
    pieces: list[str]
    finish_reason: str
    calls: list[tuple[_ToolCall, list[str]]]

    @property
    def tokens(self) -> int:
        """Completion tokens: one per content, refusal or argument piece."""
        return len(self.pieces) + sum(len(p) for _, p in self.calls)


def _answer(body: dict, index: int) -> _Answer:
    limit = _max_tokens(body)
    planned = [] if _scenario_name(body) == "echo" else _planned_calls(body)
    if planned and _scenario_name(body) != "refusal":
        calls: list[tuple[_ToolCall, list[str]]] = []
        budget = limit
        for call in planned:
            pieces = split_json(call.text)
            if budget is not None:
                pieces, budget = pieces[:budget], max(budget - len(pieces), 0)
            if not pieces:
                return _Answer("tool_calls", [], "length", calls)
            calls.append((call, pieces))
        cut = limit is not None and sum(len(p) for _, p in calls) < sum(
            len(split_json(c.text)) for c in planned
        )
        return _Answer("tool_calls", [], "length" if cut else "tool_calls", calls)
    if _scenario_name(body) == "refusal":
        kind, pieces = "refusal", split_pieces(REFUSAL_TEXT)
    elif isinstance(body.get("response_format"), dict) and body["response_format"].get("type") in (
        "json_schema",
        "json_object",
    ):
        kind, pieces = "content", split_json(_full_reply(body, index))
    else:
        kind, pieces = "content", split_pieces(_full_reply(body, index))
    if limit is not None and len(pieces) > limit:
        return _Answer(kind, pieces[:limit], "length", [])
    return _Answer(kind, pieces, "stop", [])


def expected_reply(body: dict, index: int = 0) -> str:
    """The exact content a client must reassemble for choice `index` (after max_tokens):
    the text reply, the JSON of ``response_format`` (json_schema: a document built from the
    schema by :func:`schema_value`; json_object: ``{"answer": <the text reply>}``), the
    ``echo`` scenario's JSON; "" when the answer is tool calls or a refusal."""
    answer = _answer(body, index)
    return "".join(answer.pieces) if answer.kind == "content" else ""


def expected_refusal(body: dict | None = None) -> str:
    """What a ``refusal`` answer's ``refusal`` field says (REFUSAL_TEXT, after the body's
    max_tokens); "" for a body whose answer is no refusal."""
    if body is None:
        return REFUSAL_TEXT
    answer = _answer(body, 0)
    return "".join(answer.pieces) if answer.kind == "refusal" else ""


def expected_tool_calls(body: dict, index: int = 0) -> list[dict]:
    """The calls choice `index` makes, in the non-streamed message's shape (``{"id", "type":
    "function", "function": {"name", "arguments"}}``, or ``"custom": {"name", "input"}``);
    ids are random per response, so this one says "call_expected": compare the rest. [] when
    the answer is text; arguments cut short when max_tokens cut them."""
    answer = _answer(body, index)
    return [
        _call_message(_ToolCall(c.type, c.name, "".join(p)), "call_expected")
        for c, p in answer.calls
    ]


def expected_reasoning(body: dict) -> str:
    """The reasoning_content the ``reasoning`` scenario streams before the answer."""
    said = _last_message_text(body)[:40]
    return f"Thinking about «{said}»… this is canned demo text, no model is thinking 🤔."


# --------------------------------------------------------------------------- logprobs

_ALTERNATIVES = (" the", " a", ",", ".", " and", " of", " to", " in", " is", " it", "\n")
MAX_TOP_LOGPROBS = 20


class BadParameter(ValueError):
    """A request parameter OpenAI would reject: a 400 naming `param`."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def top_logprobs(body: dict) -> int:
    """The body's ``top_logprobs`` (0 when absent); out of 0..20 is OpenAI's 400."""
    value = body.get("top_logprobs")
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadParameter(
            f"Invalid type for 'top_logprobs': expected an integer, but got {value!r} instead.",
            "top_logprobs",
        )
    if value > MAX_TOP_LOGPROBS:
        raise BadParameter(
            "Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, "
            f"but got {value} instead.",
            "top_logprobs",
        )
    if value < 0:
        raise BadParameter(
            "Invalid 'top_logprobs': integer below minimum value. Expected a value >= 0, "
            f"but got {value} instead.",
            "top_logprobs",
        )
    return value


def _logprob(position: int, token: str) -> float:
    """A deterministic negative log probability in (-2.5, -0.0001] for a token at a place."""
    return -round(0.0001 + (zlib.crc32(f"{position}:{token}".encode()) % 25000) / 10000, 4)


def _logprob_entry(position: int, token: str, top: int) -> dict:
    """One token's logprobs entry; the first alternative is the token itself, the others
    (common tokens, never the token) each 1.0 less likely than the previous."""
    logprob = _logprob(position, token)
    alternatives = [token] + [a for a in _ALTERNATIVES if a != token]
    alternatives += [f"alt{i}" for i in range(top)]
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [
            {"token": alt, "logprob": round(logprob - k, 4), "bytes": list(alt.encode())}
            for k, alt in enumerate(alternatives[:top])
        ],
    }


def _logprobs_for(pieces: list[str], top: int) -> list[dict]:
    return [_logprob_entry(i, piece, top) for i, piece in enumerate(pieces)]


def expected_logprobs(body: dict, index: int = 0) -> list[dict]:
    """The logprobs entries sent for choice `index` when the body asks ``logprobs: true``:
    one per content token (under ``logprobs.content``), or per refusal token for a refusal
    (under ``logprobs.refusal``); [] for tool calls, whose logprobs are null."""
    answer = _answer(body, index)
    return _logprobs_for(answer.pieces, top_logprobs(body)) if answer.pieces else []


def prompt_tokens(body: dict) -> int:
    """A deterministic stand-in for a tokenizer, so tests can predict usage numbers."""
    messages = _messages(body)
    return sum(len(_message_text(m).split()) for m in messages) + 3 * len(messages) + 3
