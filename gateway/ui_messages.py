"""The AI SDK's UI messages (what ``useChat`` sends to ``POST /api/chat``), validated and
turned into Chat Completions messages.

A ``UIMessage`` is ``{id, role, parts, metadata?}`` with role ``system``, ``user`` or
``assistant``; its parts are what the page shows, not what a model reads, so translating
them is a choice per part (ai 7's ``convertToModelMessages`` makes the same ones):

* ``text``: the message's text (an assistant's text parts of one step are concatenated,
  as the AI SDK's OpenAI-compatible provider does);
* ``file``: an image (``mediaType`` ``image/*``, an http(s) or data URL) becomes an
  ``image_url`` part; a WAV or MP3 data URL an ``input_audio`` part; any other data URL a
  ``file`` part (``file_data``, ``filename``). Only images may be URLs: the gateway never
  fetches one for the model;
* ``tool-<name>`` and ``dynamic-tool``: an assistant's tool call, with its result when the
  part has one (``output-available``, ``output-error``, ``output-denied``): the assistant
  message carries the call in ``tool_calls`` and a ``tool`` message after it the result.
  A call without a result (``input-streaming``, ``input-available``, waiting for approval)
  is left out, call and all: OpenAI refuses a call that no ``tool`` message answers, and
  a page that never runs its tools would otherwise be stuck after the first call. A part
  with ``inputEncoding: "text"`` is a custom tool's free-form input;
* ``step-start`` separates an assistant message's steps: each step is one assistant
  message, followed by its tool results;
* ``reasoning`` (the model's own, not to be fed back), ``source-*``, ``custom``,
  ``reasoning-file``, ``steering-message`` and ``data-*`` parts are shown, not sent.

Validation is strict where a value is read (types are not coerced; a bad URL or tool name
is a 400 naming ``messages[i].parts[j]…``), and parts ignore the keys they do not read
(``providerMetadata``, ``state`` of a text, a newer SDK's additions), as the SDK's own
``validateUIMessages`` does: a page built with a newer ``ai`` release keeps working.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, Tag, model_validator
from pydantic_core import PydanticCustomError

from gateway.request import MAX_MESSAGE_CHARS, ConversationId, pick
from sluice.errors import InvalidRequest

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # OpenAI's rule for tool names
ANSWERED = frozenset({"output-available", "output-error", "output-denied"})
DENIED = "The user denied this tool call."
AUDIO_FORMATS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/mpeg": "mp3", "audio/mp3": "mp3"}
SHOWN_NOT_SENT = frozenset(
    {"reasoning", "source-url", "source-document", "custom", "reasoning-file", "steering-message"}
)


class _Part(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextPart(_Part):
    type: Literal["text"]
    text: Annotated[str, StringConstraints(max_length=MAX_MESSAGE_CHARS)]


class FilePart(_Part):
    type: Literal["file"]
    mediaType: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    url: Annotated[str, StringConstraints(min_length=1)]
    filename: Annotated[str, StringConstraints(max_length=512)] | None = None


class StepStartPart(_Part):
    type: Literal["step-start"]


class ShownPart(_Part):
    """A part the page shows and the model is not sent (reasoning, sources…)."""

    type: str


ToolState = Literal[
    "input-streaming",
    "input-available",
    "approval-requested",
    "approval-responded",
    "output-available",
    "output-error",
    "output-denied",
]


class ToolPart(_Part):
    """``tool-<name>``, or ``dynamic-tool`` with ``toolName``."""

    type: Annotated[str, StringConstraints(pattern=r"^(tool-.+|dynamic-tool)$")]
    toolCallId: Id
    toolName: str | None = None
    state: ToolState
    input: Any = None
    output: Any = None
    errorText: str | None = None
    inputEncoding: Literal["json", "text"] | None = None

    @property
    def name(self) -> str:
        return (
            self.type.removeprefix("tool-") if self.type != "dynamic-tool" else self.toolName or ""
        )

    @model_validator(mode="after")
    def _named(self) -> ToolPart:
        if not TOOL_NAME.fullmatch(self.name):
            field = "toolName" if self.type == "dynamic-tool" else "type"
            raise PydanticCustomError(
                "invalid_tool_name",
                "a tool's name is 1 to 64 letters, digits, _ or - (tool-<name>, or "
                "dynamic-tool with toolName)",
                {"param": field},
            )
        return self


def _part_kind(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else None
    if not isinstance(kind, str):
        return None
    if kind in ("text", "file", "step-start"):
        return f"[{kind}]"
    if kind.startswith("tool-") or kind == "dynamic-tool":
        return "[tool]"
    if kind in SHOWN_NOT_SENT or kind.startswith("data-"):
        return "[shown]"
    return None


UIPart = Annotated[
    Annotated[TextPart, Tag("[text]")]
    | Annotated[FilePart, Tag("[file]")]
    | Annotated[StepStartPart, Tag("[step-start]")]
    | Annotated[ToolPart, Tag("[tool]")]
    | Annotated[ShownPart, Tag("[shown]")],
    pick(
        _part_kind,
        "type must be a UI message part: text, file, reasoning, step-start, tool-<name>, "
        "dynamic-tool, source-url, source-document, custom, reasoning-file, "
        "steering-message or data-<name>",
    ),
]


class UIMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    id: Annotated[str, StringConstraints(max_length=256)]  # the SDK may send "" for a new one
    role: Literal["system", "user", "assistant"]
    parts: Annotated[list[UIPart], Field(max_length=4096)]
    metadata: Any = None

    @model_validator(mode="after")
    def _parts_fit_role(self) -> UIMessage:
        if self.role != "assistant" and not self.parts:
            raise PydanticCustomError(
                "invalid_message", "a message needs at least one part", {"param": "parts"}
            )
        allowed = {"system": (TextPart, ShownPart), "user": (TextPart, FilePart, ShownPart)}
        for i, part in enumerate(self.parts):
            if self.role in allowed and not isinstance(part, allowed[self.role]):
                raise PydanticCustomError(
                    "invalid_message",
                    "{kind} parts are not allowed in {role} messages",
                    {"param": f"parts[{i}]", "kind": part.type, "role": self.role},
                )
        return self


class UIChatRequest(BaseModel):
    """What ``useChat``'s default transport sends besides the chat parameters: the chat's
    ``id``, its ``messages``, the ``trigger`` and the ``messageId`` it is about."""

    model_config = ConfigDict(strict=True, extra="forbid")

    id: ConversationId
    messages: Annotated[list[UIMessage], Field(min_length=1, max_length=4096)]
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: Annotated[str, StringConstraints(max_length=256)] | None = None


UI_FIELDS = frozenset(UIChatRequest.model_fields)


# -- translation -----------------------------------------------------------------------------


def to_chat_messages(messages: list[UIMessage]) -> list[dict[str, Any]]:
    """The conversation as Chat Completions messages (the module's docstring: what each
    part becomes). Raises ``InvalidRequest`` when nothing is left to send."""
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if message.role == "system":
            text = "".join(p.text for p in message.parts if isinstance(p, TextPart))
            if text:
                out.append({"role": "system", "content": text})
        elif message.role == "user":
            user = _user_message(i, message)
            if user is not None:
                out.append(user)
        else:
            out.extend(_assistant_messages(message))
    if not out:
        raise InvalidRequest(
            "messages: nothing to send (no text, file or answered tool call)", param="messages"
        )
    return out


def _user_message(i: int, message: UIMessage) -> dict[str, Any] | None:
    content: list[dict[str, Any]] = []
    for j, part in enumerate(message.parts):
        if isinstance(part, TextPart):
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, FilePart):
            content.append(_file_part(f"messages[{i}].parts[{j}]", part))
    if not content:
        return None
    if len(content) == 1 and content[0]["type"] == "text":
        return {"role": "user", "content": content[0]["text"]}
    return {"role": "user", "content": content}


def _file_part(where: str, part: FilePart) -> dict[str, Any]:
    url, media = part.url, part.mediaType.lower()
    is_data = url.startswith("data:") and ";base64," in url[:200]
    if media.startswith("image/"):
        if (is_data and url.startswith("data:image/")) or url.startswith(("http://", "https://")):
            return {"type": "image_url", "image_url": {"url": url}}
    elif is_data and media in AUDIO_FORMATS:
        data = url.partition(";base64,")[2]
        return {
            "type": "input_audio",
            "input_audio": {"data": data, "format": AUDIO_FORMATS[media]},
        }
    elif is_data:
        ref: dict[str, Any] = {"file_data": url}
        if part.filename:
            ref["filename"] = part.filename
        return {"type": "file", "file": ref}
    raise InvalidRequest(
        f"{where}.url: an image must be an http(s) URL or a base64 data URL; other files a "
        "base64 data URL (data:<mediaType>;base64,…)",
        param=f"{where}.url",
    )


def _assistant_messages(message: UIMessage) -> list[dict[str, Any]]:
    """One assistant message per step (``step-start`` parts separate them), each followed
    by the ``tool`` messages that answer its calls."""
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    calls: list[ToolPart] = []

    def flush() -> None:
        answered = [c for c in calls if c.state in ANSWERED]
        content = "".join(texts)
        if content or answered:
            turn: dict[str, Any] = {"role": "assistant", "content": content or None}
            if answered:
                turn["tool_calls"] = [_tool_call(c) for c in answered]
            out.append(turn)
            out.extend(_tool_result(c) for c in answered)
        texts.clear()
        calls.clear()

    for part in message.parts:
        if isinstance(part, StepStartPart):
            flush()
        elif isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ToolPart):
            calls.append(part)
    flush()
    return out


def _tool_call(part: ToolPart) -> dict[str, Any]:
    if part.inputEncoding == "text":
        text = part.input if isinstance(part.input, str) else json.dumps(part.input)
        return {
            "id": part.toolCallId,
            "type": "custom",
            "custom": {"name": part.name, "input": text},
        }
    arguments = json.dumps({} if part.input is None else part.input, ensure_ascii=False)
    return {
        "id": part.toolCallId,
        "type": "function",
        "function": {"name": part.name, "arguments": arguments},
    }


def _tool_result(part: ToolPart) -> dict[str, Any]:
    if part.state == "output-denied":
        content = DENIED
    elif part.state == "output-error":
        content = part.errorText or "The tool failed."
    elif isinstance(part.output, str):
        content = part.output
    else:
        content = json.dumps(part.output, ensure_ascii=False)
    return {"role": "tool", "tool_call_id": part.toolCallId, "content": content}
