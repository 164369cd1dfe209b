"""Request bodies, validated with pydantic (strict types, ranges, no unknown fields)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

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

    role: Literal["system", "user", "assistant", "tool"]
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
