"""Everything a request says, read and checked in one place.

The body (JSON, strictly: the right content type, valid UTF-8, a JSON object, standard
JSON only: ``NaN`` and ``Infinity``, which Python's parser accepts, are refused, and a
body nested deeper than the parser can follow is a 400, not a crash), validated with
pydantic (strict types, ranges, no unknown fields); and the headers and parameters the
routes act on: the gateway access key (``Authorization``), the caller's own upstream key
(``X-Upstream-Api-Key``), ``Idempotency-Key``, a stream's cursor (``Last-Event-ID`` or
``?after=``) and an event URL's signed ``token``. Whoever the access key (or token) proves
the caller to be is decided in ``gateway.access``; ``owner()`` reads the answer.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from flask import g, request
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sluice.errors import InvalidRequest, UnsupportedMediaType
from sluice.keyvault import validate_user_key

# -- the body ---------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


def json_object() -> dict[str, Any]:
    """The body as a JSON object, or a 400/415 that says what is wrong with it."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json")
    raw = request.get_data(cache=False)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc.msg} at {exc.pos}") from None
    except RecursionError:
        raise InvalidRequest("the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
MAX_MESSAGE_CHARS = 1_000_000
Bias = Annotated[float, Field(ge=-100, le=100)]


class TextPart(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    type: Literal["text"]
    text: Annotated[str, StringConstraints(max_length=MAX_MESSAGE_CHARS)]


class Message(BaseModel):
    # Assistant turns may carry tool_calls and tool messages a tool_call_id: kept as given.
    model_config = ConfigDict(strict=True, extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: (
        Annotated[str, StringConstraints(max_length=MAX_MESSAGE_CHARS)]
        | Annotated[list[TextPart], Field(min_length=1)]
        | None
    ) = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _content_present(self) -> Message:
        if self.role != "assistant" and not self.content:
            raise PydanticCustomError(
                "missing_content",
                "content must be a non-empty string or a list of text parts",
                {"param": "content"},
            )
        return self


class ChatParameters(BaseModel):
    """OpenAI chat-completion parameters that Sluice accepts and forwards."""

    model_config = ConfigDict(strict=True, extra="forbid")

    model: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    messages: Annotated[list[Message], Field(min_length=1, max_length=4096)]
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1, le=16)] | None = None
    stop: (
        Annotated[str, StringConstraints(min_length=1)]
        | Annotated[list[NonEmptyStr], Field(min_length=1, max_length=4)]
        | None
    ) = None
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=0)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    logit_bias: (
        Annotated[dict[str, Annotated[float, Field(ge=-100, le=100)]], Field(max_length=1024)]
        | None
    ) = None
    user: Annotated[str, StringConstraints(max_length=256)] | None = None
    seed: int | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    # OpenAI's limits: 16 pairs, keys up to 64 characters, values up to 512
    metadata: (
        Annotated[
            dict[
                Annotated[str, StringConstraints(max_length=64)],
                Annotated[str, StringConstraints(max_length=512)],
            ],
            Field(max_length=16),
        ]
        | None
    ) = None
    store: bool | None = None

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key in value or {}:
            if not (key.isascii() and key.isdigit()):
                raise ValueError(f"keys must be token ids (digits), got {key!r}")
        return value

    @model_validator(mode="after")
    def _one_token_limit(self) -> ChatParameters:
        both = self.max_tokens is not None and self.max_completion_tokens is not None
        if both and self.max_tokens != self.max_completion_tokens:
            raise PydanticCustomError(
                "conflicting_limits",
                "give max_tokens or max_completion_tokens, not both",
                {"param": "max_completion_tokens"},
            )
        return self

    @property
    def reply_limit(self) -> int | None:
        """The answer's token limit (``max_completion_tokens`` is OpenAI's newer name)."""
        return self.max_completion_tokens or self.max_tokens or None

    def optional_parameters(self) -> dict[str, Any]:
        """The optional parameters that were set, with one ``max_tokens``."""
        out = self.model_dump(
            exclude={"model", "messages", "max_completion_tokens", "stream", "stream_options"},
            exclude_none=True,
        )
        out.pop("max_tokens", None)
        if self.reply_limit:
            out["max_tokens"] = self.reply_limit
        return out


class JobRequest(ChatParameters):
    """``POST /v1/jobs``: the chat parameters, and whether to answer with the stream."""

    stream: bool = Field(
        default=False,
        description=(
            "true: answer 200 with the job's event stream (the events of "
            "GET /v1/jobs/{id}/events, resumable there) instead of 202 with the job"
        ),
    )


class StreamOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    include_usage: bool = False


class ChatCompletionRequest(ChatParameters):
    """``POST /v1/chat/completions``: OpenAI's request, run as a Sluice job."""

    stream: bool = False
    stream_options: StreamOptions | None = None


# -- the headers and parameters -----------------------------------------------------------


def bearer_key() -> str | None:
    """The gateway access key of ``Authorization: Bearer <key>`` (as the OpenAI SDKs send
    their ``api_key``), or None."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return (key.strip() or None) if scheme.lower() == "bearer" else None


def events_token() -> str | None:
    """The signed ``token`` of an ``events_url`` (a browser's ``EventSource`` cannot send
    headers, so the URL carries the proof)."""
    return request.args.get("token") or None


def client_address() -> str:
    """The caller's address (the one a trusted proxy saw, with ``SLUICE_PROXY_HOPS``)."""
    return request.remote_addr or "unknown"


def owner() -> str:
    """The owner id ``gateway.access`` found for this request ("" when access is open)."""
    return getattr(g, "owner", "")


def upstream_key() -> str | None:
    """The caller's own upstream key (``X-Upstream-Api-Key``), if it sent one."""
    value = request.headers.get("X-Upstream-Api-Key")
    return None if value is None else validate_user_key(value)


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise InvalidRequest("Idempotency-Key must be 1 to 255 characters", param="Idempotency-Key")
    return key


def cursor() -> tuple[str, str]:
    """The client's resume cursor and the name it came in (the ``Last-Event-ID`` header
    wins over ``?after=``); the wire format reads it (``gateway.wire``)."""
    raw = request.headers.get("Last-Event-ID")
    if raw is not None and raw.strip() != "":
        return raw, "Last-Event-ID"
    return request.args.get("after", "0"), "after"
