"""OpenAI's Responses API request, validated whole and translated into a chat job.

Upstreams stay Chat Completions: a ``POST /v1/responses`` body is checked here with
strict pydantic models (unknown fields refused, each union picking its branch from the
value, as ``gateway.request`` does for chat) and turned into the same
``ChatParameters`` that ``/v1/chat/completions`` submits. What the Response object must
echo later (instructions, tools, text format, metadata, ...) and the input items (for
``input_items`` and for chaining with ``previous_response_id``) go into the job's
``meta``; the gateway renders the Response from the meta and the job's log alone
(``gateway/wire/responses_events.py``).

The translation, item by item (OpenAI's own mapping between the two APIs):

* ``instructions`` -> a ``developer`` message first (``sluice.models`` sends it as
  ``system`` to models that do not take ``developer``). Not carried over by
  ``previous_response_id``, as OpenAI.
* a ``message`` item -> a message of its role; ``input_text`` -> a text part,
  ``input_image`` -> an ``image_url`` part (with ``detail``), ``input_file`` -> a
  ``file`` part; an assistant's ``output_text`` parts -> its content, ``refusal`` parts
  -> its refusal.
* ``function_call`` items -> ``tool_calls`` of an assistant message (the assistant
  message just before them, or a new one: parallel calls share one message);
  ``function_call_output`` -> a ``tool`` message.
* ``reasoning`` items are skipped: Chat Completions upstreams take no reasoning back.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gateway.errors import from_validation_error
from gateway.request import (
    MAX_MESSAGE_CHARS,
    ChatParameters,
    ImageURL,
    JSONObject,
    Text,
    ToolName,
    pick,
)
from sluice.errors import InvalidRequest

Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Metadata = Annotated[
    dict[
        Annotated[str, StringConstraints(max_length=64)],
        Annotated[str, StringConstraints(max_length=512)],
    ],
    Field(max_length=16),
]
ItemStatus = Literal["in_progress", "completed", "incomplete"]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


def _by_type(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return f"[{kind}]" if isinstance(kind, str) else None


def _item_kind(value: Any) -> str | None:
    """An input item's branch: its ``type``, or ``message`` for OpenAI's "easy" input
    message (``{"role", "content"}`` without a type)."""
    if isinstance(value, dict) and value.get("type") is None and "role" in value:
        return "[message]"
    return _by_type(value)


def _text_or_list(value: Any) -> str | None:
    if isinstance(value, str):
        return "[str]"
    return "[list]" if isinstance(value, list) else None


def _field_error(param: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_item", message, {"param": param})


# -- content parts ------------------------------------------------------------------------


class InputText(_Strict):
    type: Literal["input_text"]
    text: Text


class InputImage(_Strict):
    type: Literal["input_image"]
    image_url: Annotated[str, StringConstraints(min_length=1)] | None = None
    file_id: Id | None = None
    detail: Literal["auto", "low", "high"] | None = None

    @model_validator(mode="after")
    def _has_url(self) -> InputImage:
        if self.image_url is None:
            raise _field_error("image_url", "give image_url (file ids are not supported here)")
        try:
            ImageURL.model_validate({"url": self.image_url})  # http(s) or a data URL
        except ValidationError as exc:
            message = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
            raise _field_error("image_url", message) from None
        return self

    def chat_part(self) -> dict[str, Any]:
        image: dict[str, Any] = {"url": self.image_url}
        if self.detail is not None:
            image["detail"] = self.detail
        return {"type": "image_url", "image_url": image}


class InputFile(_Strict):
    type: Literal["input_file"]
    file_data: Annotated[str, StringConstraints(min_length=1)] | None = None
    file_id: Id | None = None
    filename: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None

    @model_validator(mode="after")
    def _data_or_id(self) -> InputFile:
        if self.file_data is None and self.file_id is None:
            raise _field_error("file_data", "give file_data or file_id")
        return self

    def chat_part(self) -> dict[str, Any]:
        file = self.model_dump(exclude={"type"}, exclude_none=True)
        return {"type": "file", "file": file}


class OutputText(_Strict):
    """An assistant's text, as a Response's message item carries it (sent back as
    history by SDKs that manage the conversation themselves)."""

    type: Literal["output_text"]
    text: Text
    annotations: list[JSONObject] | None = None
    logprobs: list[JSONObject] | None = None


class Refusal(_Strict):
    type: Literal["refusal"]
    refusal: Text


Part = Annotated[
    Annotated[InputText, Tag("[input_text]")]
    | Annotated[InputImage, Tag("[input_image]")]
    | Annotated[InputFile, Tag("[input_file]")]
    | Annotated[OutputText, Tag("[output_text]")]
    | Annotated[Refusal, Tag("[refusal]")],
    pick(_by_type, "type must be one of input_text, input_image, input_file, output_text, refusal"),
]
PARTS_BY_ROLE = {
    "user": {"input_text", "input_image", "input_file"},
    "system": {"input_text"},
    "developer": {"input_text"},
    "assistant": {"output_text", "refusal", "input_text"},
}


# -- input items --------------------------------------------------------------------------


class MessageItem(_Strict):
    type: Literal["message"] | None = None
    role: Literal["user", "system", "developer", "assistant"]
    content: Annotated[
        Annotated[Text, Tag("[str]")]
        | Annotated[Annotated[list[Part], Field(min_length=1)], Tag("[list]")],
        pick(_text_or_list, "content must be a string or a list of content parts"),
    ]
    id: Id | None = None
    status: ItemStatus | None = None
    phase: Literal["commentary", "final_answer"] | None = None

    @model_validator(mode="after")
    def _parts_fit_role(self) -> MessageItem:
        if isinstance(self.content, list):
            allowed = PARTS_BY_ROLE[self.role]
            for i, part in enumerate(self.content):
                if part.type not in allowed:
                    raise _field_error(
                        f"content[{i}]",
                        f"{part.type} parts are not allowed in {self.role} messages "
                        f"(allowed: {', '.join(sorted(allowed))})",
                    )
        return self


class FunctionCallItem(_Strict):
    type: Literal["function_call"]
    call_id: Id
    name: ToolName
    arguments: Annotated[str, StringConstraints(max_length=MAX_MESSAGE_CHARS)]
    id: Id | None = None
    status: ItemStatus | None = None


ToolOutputPart = Annotated[
    Annotated[InputText, Tag("[input_text]")],
    pick(_by_type, "type must be input_text (a Chat Completions tool result is text)"),
]


class FunctionCallOutputItem(_Strict):
    type: Literal["function_call_output"]
    call_id: Id
    output: Annotated[
        Annotated[Text, Tag("[str]")]
        | Annotated[Annotated[list[ToolOutputPart], Field(min_length=1)], Tag("[list]")],
        pick(_text_or_list, "output must be a string or a list of input_text parts"),
    ]
    id: Id | None = None
    status: ItemStatus | None = None


class ReasoningItem(_Strict):
    """A reasoning item sent back as history: accepted and skipped."""

    type: Literal["reasoning"]
    id: Id | None = None
    summary: list[JSONObject] = Field(default_factory=list)
    content: list[JSONObject] | None = None
    encrypted_content: str | None = None
    status: ItemStatus | None = None


InputItem = Annotated[
    Annotated[MessageItem, Tag("[message]")]
    | Annotated[FunctionCallItem, Tag("[function_call]")]
    | Annotated[FunctionCallOutputItem, Tag("[function_call_output]")]
    | Annotated[ReasoningItem, Tag("[reasoning]")],
    pick(_item_kind, "type must be one of message, function_call, function_call_output, reasoning"),
]


# -- tools, text format, reasoning ---------------------------------------------------------


class FunctionTool(_Strict):
    type: Literal["function"]
    name: ToolName
    description: Annotated[str, StringConstraints(max_length=MAX_MESSAGE_CHARS)] | None = None
    parameters: JSONObject | None = None
    strict: bool | None = None


class FunctionChoice(_Strict):
    type: Literal["function"]
    name: ToolName


def _choice_kind(value: Any) -> str | None:
    return "[mode]" if isinstance(value, str) else _by_type(value)


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("[mode]")]
    | Annotated[FunctionChoice, Tag("[function]")],
    pick(_choice_kind, 'must be "none", "auto", "required" or {"type": "function", "name": …}'),
]


class TextFormatText(_Strict):
    type: Literal["text"]


class TextFormatJSONObject(_Strict):
    type: Literal["json_object"]


class TextFormatJSONSchema(_Strict):
    type: Literal["json_schema"]
    name: ToolName
    schema_: JSONObject = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


TextFormat = Annotated[
    Annotated[TextFormatText, Tag("[text]")]
    | Annotated[TextFormatJSONObject, Tag("[json_object]")]
    | Annotated[TextFormatJSONSchema, Tag("[json_schema]")],
    pick(_by_type, "type must be text, json_object or json_schema"),
]


class TextConfig(_Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(_Strict):
    effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class StreamOptions(_Strict):
    include_obfuscation: bool | None = None  # Sluice's events carry no padding


class ResponsesRequest(_Strict):
    """``POST /v1/responses``: OpenAI's request, run as a Sluice chat job."""

    model: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    input: Annotated[
        Annotated[Text, Tag("[str]")]
        | Annotated[
            Annotated[list[InputItem], Field(min_length=1, max_length=4096)], Tag("[list]")
        ],
        pick(_text_or_list, "input must be a string or a list of input items"),
    ]
    instructions: Text | None = None
    tools: Annotated[list[FunctionTool], Field(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    max_output_tokens: Annotated[int, Field(ge=16)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    metadata: Metadata | None = None
    previous_response_id: Id | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    background: bool | None = None
    store: bool | None = None
    # accepted and echoed or ignored: what SDKs send by default (the Agents SDK sends
    # include: [] on every request)
    include: (
        Annotated[list[Annotated[str, StringConstraints(max_length=128)]], Field(max_length=32)]
        | None
    ) = None
    truncation: Literal["auto", "disabled"] | None = None
    user: Annotated[str, StringConstraints(max_length=256)] | None = None
    safety_identifier: Annotated[str, StringConstraints(max_length=256)] | None = None
    prompt_cache_key: Annotated[str, StringConstraints(max_length=1024)] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None

    @model_validator(mode="after")
    def _agrees(self) -> ResponsesRequest:
        """What OpenAI refuses, refused before the job is queued."""
        choice = self.tool_choice
        if isinstance(choice, FunctionChoice) and choice.name not in {
            t.name for t in self.tools or ()
        }:
            raise _field_error("tool_choice", f"names {choice.name}, which is not among tools")
        if choice not in (None, "none", "auto") and not self.tools:
            raise _field_error("tool_choice", "is only allowed when tools are given")
        if self.background and self.store is False:
            raise _field_error("store", "background responses must be stored (store: true)")
        return self

    @property
    def stored(self) -> bool:
        return self.store is not False


# -- the translation ------------------------------------------------------------------------


def items_of(req: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's input as items (a string is one user message), as plain dicts."""
    if isinstance(req.input, str):
        return [{"type": "message", "role": "user", "content": req.input}]
    out = []
    for item in req.input:
        data = item.model_dump(exclude_none=True, by_alias=True)
        data.setdefault("type", "message")
        out.append(data)
    return out


def messages_of(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages for Responses items (the module docstring's mapping)."""
    messages: list[dict[str, Any]] = []
    joinable = False  # the last message is an assistant's that function calls may join
    for item in items:
        kind = item.get("type")
        if kind == "message":
            messages.append(_message(item))
            joinable = item["role"] == "assistant"
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            if joinable:
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            joinable = True
        elif kind == "function_call_output":
            output = item["output"]
            if isinstance(output, list):
                output = "".join(part.get("text", "") for part in output)
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": output})
            joinable = False
        # reasoning items: skipped (joinable stays as it was: calls follow their reasoning)
    # an assistant turn with no text, refusal or calls (an empty answer) says nothing
    return [
        m
        for m in messages
        if m["role"] != "assistant" or m.get("content") or m.get("refusal") or m.get("tool_calls")
    ]


def _message(item: dict[str, Any]) -> dict[str, Any]:
    role, content = item["role"], item["content"]
    if isinstance(content, str):
        return {"role": role, "content": content}
    if role == "assistant":
        text = "".join(p.get("text", "") for p in content if p["type"] != "refusal")
        refusal = "".join(p["refusal"] for p in content if p["type"] == "refusal")
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if refusal:
            message["refusal"] = refusal
        return message
    if role in ("system", "developer"):
        return {"role": role, "content": "".join(p["text"] for p in content)}
    parts = []
    for part in content:
        if part["type"] == "input_text":
            parts.append({"type": "text", "text": part["text"]})
        elif part["type"] == "input_image":
            parts.append(InputImage.model_validate(part).chat_part())
        else:
            parts.append(InputFile.model_validate(part).chat_part())
    return {"role": role, "content": parts}


def chat_parameters(req: ResponsesRequest, history: list[dict[str, Any]]) -> ChatParameters:
    """The chat job for ``req`` after ``history`` (the chained responses' items)."""
    messages = messages_of([*history, *items_of(req)])
    if req.instructions:
        messages.insert(0, {"role": "developer", "content": req.instructions})
    if not messages:
        raise InvalidRequest("input: has nothing to send to the model", param="input")
    body: dict[str, Any] = {"model": req.model, "messages": messages}
    for name in ("temperature", "top_p", "parallel_tool_calls", "user", "safety_identifier",
                 "prompt_cache_key", "service_tier"):  # fmt: skip
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    if req.max_output_tokens is not None:
        body["max_completion_tokens"] = req.max_output_tokens
    if req.tools:
        body["tools"] = [
            {"type": "function", "function": t.model_dump(exclude={"type"}, exclude_none=True)}
            for t in req.tools
        ]
        choice = req.tool_choice
        if choice is not None:
            body["tool_choice"] = (
                choice
                if isinstance(choice, str)
                else {"type": "function", "function": {"name": choice.name}}
            )
    else:  # OpenAI takes tool_choice and parallel_tool_calls without tools; chat does not
        body.pop("parallel_tool_calls", None)
    fmt = req.text.format if req.text else None
    if isinstance(fmt, TextFormatJSONSchema):
        spec = fmt.model_dump(exclude={"type"}, exclude_none=True, by_alias=True)
        body["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif fmt is not None:
        body["response_format"] = {"type": fmt.type}
    if req.text and req.text.verbosity:
        body["verbosity"] = req.text.verbosity
    if req.reasoning and req.reasoning.effort:
        body["reasoning_effort"] = req.reasoning.effort
    if req.top_logprobs:
        body.update(logprobs=True, top_logprobs=req.top_logprobs)
    try:
        return ChatParameters.model_validate(body)
    except ValidationError as exc:
        error = from_validation_error(exc)
        raise InvalidRequest(f"input: {error.message}", param="input") from None


def echo(req: ResponsesRequest) -> dict[str, Any]:
    """The request's fields a Response object shows, with OpenAI's defaults."""
    fmt = req.text.format if req.text and req.text.format else TextFormatText(type="text")
    choice = req.tool_choice or "auto"
    return {
        "background": bool(req.background),
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "max_tool_calls": None,
        "metadata": req.metadata or {},
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": req.previous_response_id,
        "prompt_cache_key": req.prompt_cache_key,
        "reasoning": {
            "effort": req.reasoning.effort if req.reasoning else None,
            "summary": req.reasoning.summary if req.reasoning else None,
        },
        "safety_identifier": req.safety_identifier,
        "service_tier": req.service_tier or "auto",
        "store": req.stored,
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "text": {
            "format": fmt.model_dump(exclude_none=True, by_alias=True),
            "verbosity": (req.text.verbosity if req.text else None) or "medium",
        },
        "tool_choice": choice if isinstance(choice, str) else choice.model_dump(),
        "tools": [
            {**t.model_dump(exclude_none=True), "strict": t.strict is not False}
            for t in req.tools or ()
        ],
        "top_logprobs": req.top_logprobs or 0,
        "top_p": 1.0 if req.top_p is None else req.top_p,
        "truncation": req.truncation or "disabled",
        "user": req.user,
    }
