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

import binascii
import json
from collections.abc import Callable, Collection
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from flask import g, request
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StringConstraints,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gateway.vendor_parameters import split_vendor_parameters
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
Text = Annotated[str, StringConstraints(max_length=MAX_MESSAGE_CHARS)]
# OpenAI's rule for function and tool names
ToolName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
# a conversation id (an AI SDK chat id, a UUID, an app's own): printable ASCII, no
# spaces, no "/" (it is a path segment)
ConversationId = Annotated[str, StringConstraints(pattern=r"^[!-.0-~]{1,128}$")]
JSONObject = dict[str, Any]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


def pick(tag_of: Callable[[Any], str | None], what: str) -> Discriminator:
    """Pick a union's branch from the value (``tag_of``), so a bad value is reported
    against the one branch it meant, not against every branch in turn. The tags are
    bracketed (``Tag("[text]")``): ``gateway.errors`` leaves them out of the field path
    it reports."""
    return Discriminator(
        tag_of, custom_error_type="invalid_union_member", custom_error_message=what
    )


def _by_type(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return f"[{kind}]" if isinstance(kind, str) else None


def _text_or_parts(value: Any) -> str | None:
    if isinstance(value, str):
        return "[str]"
    return "[list]" if isinstance(value, list) else None


# -- content parts


class TextPart(_Strict):
    type: Literal["text"]
    text: Text


class ImageURL(_Strict):
    url: Annotated[str, StringConstraints(min_length=1)]
    detail: Literal["auto", "low", "high"] | None = None

    @field_validator("url")
    @classmethod
    def _image_url(cls, value: str) -> str:
        # OpenAI takes a public URL or a base64 data URL; the gateway never fetches it
        # (nor does the worker: the URL goes to the upstream as given)
        if value.startswith(("http://", "https://")):
            return value
        if value.startswith("data:image/") and ";base64," in value[:100]:
            if not _is_base64(value.partition(";base64,")[2]):
                raise ValueError("the data URL's data is not valid base64")
            return value
        raise ValueError("must be an http(s) URL or a base64 data URL (data:image/…;base64,…)")


def _is_base64(data: str) -> bool:
    """Whether ``data`` is standard, padded, non-empty base64 (what a data URL carries).

    Checked here so that a broken image is a 400 naming its field at once, rather than a
    job queued only for the upstream to refuse it. Its size needs no bound of its own:
    the body's (``SLUICE_MAX_BODY_BYTES``) bounds it, and this check reads it once, in C."""
    try:
        return bool(data) and bool(binascii.a2b_base64(data, strict_mode=True))
    except (binascii.Error, ValueError):
        return False


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(_Strict):
    data: Annotated[str, StringConstraints(min_length=1)]  # base64
    format: Literal["wav", "mp3"]


class AudioPart(_Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileRef(_Strict):
    file_data: Annotated[str, StringConstraints(min_length=1)] | None = None  # a data URL
    file_id: Annotated[str, StringConstraints(min_length=1)] | None = None
    filename: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None

    @model_validator(mode="after")
    def _data_or_id(self) -> FileRef:
        if self.file_data is None and self.file_id is None:
            raise PydanticCustomError(
                "missing_file", "give file_data or file_id", {"param": "file_data"}
            )
        return self


class FilePart(_Strict):
    type: Literal["file"]
    file: FileRef


class RefusalPart(_Strict):
    type: Literal["refusal"]
    refusal: Text


ContentPart = Annotated[
    Annotated[TextPart, Tag("[text]")]
    | Annotated[ImagePart, Tag("[image_url]")]
    | Annotated[AudioPart, Tag("[input_audio]")]
    | Annotated[FilePart, Tag("[file]")]
    | Annotated[RefusalPart, Tag("[refusal]")],
    pick(_by_type, "type must be one of text, image_url, input_audio, file, refusal"),
]
Content = Annotated[
    Annotated[Text, Tag("[str]")]
    | Annotated[Annotated[list[ContentPart], Field(min_length=1)], Tag("[list]")],
    pick(_text_or_parts, "content must be a string or a list of content parts"),
]
# which parts each role may send (OpenAI's message types)
PARTS_BY_ROLE = {
    "system": {"text"},
    "developer": {"text"},
    "user": {"text", "image_url", "input_audio", "file"},
    "assistant": {"text", "refusal"},
    "tool": {"text"},
}


# -- an assistant's tool calls, as sent back in the conversation


class FunctionCall(_Strict):
    name: ToolName
    arguments: str


class FunctionToolCall(_Strict):
    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    type: Literal["function"]
    function: FunctionCall


class CustomCall(_Strict):
    name: ToolName
    input: str


class CustomToolCall(_Strict):
    id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    type: Literal["custom"]
    custom: CustomCall


ToolCall = Annotated[
    Annotated[FunctionToolCall, Tag("[function]")] | Annotated[CustomToolCall, Tag("[custom]")],
    pick(_by_type, "type must be function or custom"),
]


class Message(BaseModel):
    """One message, by role (OpenAI's system, developer, user, assistant and tool
    messages). Fields of other servers' messages (DeepSeek's ``prefix``, an assistant's
    ``reasoning_content``) are kept as given."""

    model_config = ConfigDict(strict=True, extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Content | None = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    # assistant messages
    tool_calls: Annotated[list[ToolCall], Field(min_length=1, max_length=128)] | None = None
    refusal: Text | None = None
    # tool messages
    tool_call_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None

    @model_validator(mode="after")
    def _fits_role(self) -> Message:
        role = self.role
        if role == "tool" and self.tool_call_id is None:
            raise _field_error("tool_call_id", "a tool message needs the tool_call_id it answers")
        if role != "tool" and self.tool_call_id is not None:
            raise _field_error("tool_call_id", "only tool messages carry a tool_call_id")
        if role != "assistant" and (self.tool_calls is not None or self.refusal is not None):
            field_name = "tool_calls" if self.tool_calls is not None else "refusal"
            raise _field_error(field_name, "only assistant messages carry it")
        if role != "assistant" and not self.content:
            raise _field_error("content", "must be a non-empty string or a list of parts")
        if role == "assistant" and not (self.content or self.tool_calls or self.refusal):
            raise _field_error("content", "an assistant message needs content or tool_calls")
        if isinstance(self.content, list):
            allowed = PARTS_BY_ROLE[role]
            for i, part in enumerate(self.content):
                if part.type not in allowed:
                    raise _field_error(
                        f"content[{i}]",
                        f"{part.type} parts are not allowed in {role} messages "
                        f"(allowed: {', '.join(sorted(allowed))})",
                    )
        return self


def _field_error(param: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_message", message, {"param": param})


# -- tools


class FunctionDefinition(_Strict):
    name: ToolName
    description: Annotated[str, StringConstraints(max_length=MAX_MESSAGE_CHARS)] | None = None
    parameters: JSONObject | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _schema_object(cls, value: JSONObject | None) -> JSONObject | None:
        # OpenAI takes a JSON Schema whose top level describes an object
        if value is not None and value.get("type", "object") != "object":
            raise ValueError('must be a JSON Schema of an object ("type": "object")')
        return value


class FunctionTool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class CustomDefinition(_Strict):
    name: ToolName
    description: Annotated[str, StringConstraints(max_length=MAX_MESSAGE_CHARS)] | None = None
    format: JSONObject | None = None  # {"type": "text"} or a grammar


class CustomTool(_Strict):
    type: Literal["custom"]
    custom: CustomDefinition


Tool = Annotated[
    Annotated[FunctionTool, Tag("[function]")] | Annotated[CustomTool, Tag("[custom]")],
    pick(_by_type, "type must be function or custom"),
]


class NamedFunction(_Strict):
    name: ToolName


class NamedFunctionChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class NamedCustomChoice(_Strict):
    type: Literal["custom"]
    custom: NamedFunction


class AllowedTools(_Strict):
    mode: Literal["auto", "required"]
    tools: Annotated[list[JSONObject], Field(min_length=1, max_length=128)]


class AllowedToolsChoice(_Strict):
    type: Literal["allowed_tools"]
    allowed_tools: AllowedTools


def _choice_kind(value: Any) -> str | None:
    return "[mode]" if isinstance(value, str) else _by_type(value)


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("[mode]")]
    | Annotated[NamedFunctionChoice, Tag("[function]")]
    | Annotated[NamedCustomChoice, Tag("[custom]")]
    | Annotated[AllowedToolsChoice, Tag("[allowed_tools]")],
    pick(
        _choice_kind,
        'must be "none", "auto", "required" or a tool by name ({"type": "function", …})',
    ),
]


# -- response_format and prediction


class TextFormat(_Strict):
    type: Literal["text"]


class JSONObjectFormat(_Strict):
    type: Literal["json_object"]


class JSONSchemaSpec(_Strict):
    name: ToolName
    description: str | None = None
    schema_: JSONObject | None = Field(default=None, alias="schema")
    strict: bool | None = None


class JSONSchemaFormat(_Strict):
    type: Literal["json_schema"]
    json_schema: JSONSchemaSpec


ResponseFormat = Annotated[
    Annotated[TextFormat, Tag("[text]")]
    | Annotated[JSONObjectFormat, Tag("[json_object]")]
    | Annotated[JSONSchemaFormat, Tag("[json_schema]")],
    pick(_by_type, "type must be text, json_object or json_schema"),
]


class Prediction(_Strict):
    type: Literal["content"]
    content: Text | Annotated[list[TextPart], Field(min_length=1)]


def _tool_name(item: FunctionTool | CustomTool | NamedFunctionChoice | NamedCustomChoice) -> str:
    return (
        item.function.name
        if isinstance(item, FunctionTool | NamedFunctionChoice)
        else item.custom.name
    )


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
    tools: Annotated[list[Tool], Field(min_length=1, max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    prediction: Prediction | None = None
    modalities: Annotated[list[Literal["text"]], Field(min_length=1)] | None = None
    prompt_cache_key: Annotated[str, StringConstraints(max_length=1024)] | None = None
    safety_identifier: Annotated[str, StringConstraints(max_length=256)] | None = None

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

    @model_validator(mode="after")
    def _tools_agree(self) -> ChatParameters:
        """What OpenAI refuses, refused before the job is queued: a tool_choice without
        tools, or naming a tool that is not among them; top_logprobs without logprobs."""
        choice = self.tool_choice
        if choice is not None and choice != "none" and not self.tools:
            raise PydanticCustomError(
                "tools_missing", "is only allowed when tools are given", {"param": "tool_choice"}
            )
        if isinstance(choice, NamedFunctionChoice | NamedCustomChoice):
            named = _tool_name(choice)
            if named not in {_tool_name(t) for t in self.tools or ()}:
                raise PydanticCustomError(
                    "unknown_tool",
                    "names {name}, which is not among tools",
                    {"param": "tool_choice", "name": named},
                )
        if self.top_logprobs is not None and self.logprobs is not True:
            raise PydanticCustomError(
                "logprobs_missing", "needs logprobs: true", {"param": "top_logprobs"}
            )
        return self

    # the vendor parameters that came with the request (``gateway.vendor_parameters``)
    _vendor: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def vendor_parameters(self) -> dict[str, Any]:
        """Top-level fields forwarded unchanged (``gateway.vendor_parameters``)."""
        return self._vendor

    @property
    def reply_limit(self) -> int | None:
        """The answer's token limit (``max_completion_tokens`` is OpenAI's newer name)."""
        return self.max_completion_tokens or self.max_tokens or None

    # fields that are about the job, not the completion: never sent upstream
    JOB_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "model",
            "messages",
            "max_completion_tokens",
            "stream",
            "stream_options",
            "conversation_id",
        }
    )

    def optional_parameters(self) -> dict[str, Any]:
        """The optional parameters that were set, with one ``max_tokens``."""
        out = self.model_dump(
            exclude=set(self.JOB_FIELDS),
            exclude_none=True,
            by_alias=True,
        )
        out.pop("max_tokens", None)
        if self.reply_limit:
            out["max_tokens"] = self.reply_limit
        return out


class JobRequest(ChatParameters):
    """``POST /v1/jobs``: the chat parameters, whether to answer with the stream, and
    the conversation the job is a turn of."""

    conversation_id: ConversationId | None = Field(
        default=None,
        description=(
            "the conversation this job is a turn of: GET /v1/conversations/{id}/events "
            "follows its latest job; one job at a time (409 conversation_busy while one runs)"
        ),
    )

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
    include_obfuscation: bool | None = None  # OpenAI's; Sluice's chunks carry no padding


class ChatCompletionRequest(ChatParameters):
    """``POST /v1/chat/completions``: OpenAI's request, run as a Sluice job."""

    stream: bool = False
    stream_options: StreamOptions | None = None


def chat_parameters(model: type[P], vendor_allowed: Collection[str]) -> P:
    """The body as ``model`` (a ``ChatParameters``), its vendor parameters set apart."""
    body = json_object()
    vendor = split_vendor_parameters(body, model.model_fields.keys(), vendor_allowed)
    params = model.model_validate(body)
    params._vendor = vendor
    return params


P = TypeVar("P", bound=ChatParameters)

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
