"""A Responses request, validated and translated into the chat job Sluice runs
(gateway/responses_request.py): input items to messages, tools, text format, reasoning,
limits; what OpenAI refuses is refused with the field it names."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.errors import from_validation_error
from gateway.responses_request import ResponsesRequest, chat_parameters, echo, items_of
from sluice.errors import InvalidRequest

PNG = "data:image/png;base64,iVBORw0KGgo="
WEATHER = {"type": "function", "name": "get_weather", "description": "Weather.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
           "strict": True}  # fmt: skip


def chat(body: dict[str, Any], history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    params = chat_parameters(ResponsesRequest.model_validate(body), history or [])
    return params.model_dump(exclude_none=True, by_alias=True)


def refused(body: dict[str, Any]) -> tuple[str | None, str]:
    with pytest.raises(ValidationError) as info:
        ResponsesRequest.model_validate(body)
    error = from_validation_error(info.value)
    return error.param, error.message


def test_a_string_input_with_instructions_is_a_developer_then_a_user_message() -> None:
    out = chat({"model": "gpt-4o", "input": "Hi", "instructions": "Be brief."})
    assert out["messages"] == [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]


def test_items_become_messages_and_calls_join_their_assistant_turn() -> None:
    items = [
        {"role": "system", "content": [{"type": "input_text", "text": "Sys"}]},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Look"},
            {"type": "input_image", "image_url": PNG, "detail": "low"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather",
         "arguments": '{"city":"Paris"}', "id": "fc_1", "status": "completed"},
        {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "rain"}]},
    ]  # fmt: skip
    out = chat({"model": "gpt-4o", "input": items, "tools": [WEATHER]})
    assert out["messages"] == [
        {"role": "system", "content": "Sys"},
        {"role": "user", "content": [
            {"type": "text", "text": "Look"},
            {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "c2", "type": "function",
             "function": {"name": "get_weather", "arguments": "{}"}},
        ]},
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
        {"role": "tool", "content": "rain", "tool_call_id": "c2"},
    ]  # fmt: skip
    assert out["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather.", "parameters": WEATHER["parameters"],
        "strict": True}}]  # fmt: skip


def test_parameters_map_onto_chat_s() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    out = chat({
        "model": "o3-mini", "input": "x", "tools": [WEATHER],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False, "max_output_tokens": 100, "temperature": 0.5, "top_p": 0.9,
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "json_schema", "name": "A", "schema": schema, "strict": True},
                 "verbosity": "low"},
        "metadata": {"k": "v"}, "store": True, "include": [], "truncation": "disabled",
    })  # fmt: skip
    assert out["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert out["parallel_tool_calls"] is False and out["max_completion_tokens"] == 100
    assert out["reasoning_effort"] == "low" and out["verbosity"] == "low"
    spec = {"name": "A", "schema": schema, "strict": True}
    assert out["response_format"] == {"type": "json_schema", "json_schema": spec}
    assert "metadata" not in out and "store" not in out  # the Response's, not the upstream's
    assert chat({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}})[
        "response_format"] == {"type": "json_object"}  # fmt: skip


def test_history_comes_first_and_instructions_before_it() -> None:
    answer = [{"type": "output_text", "text": "one", "annotations": []}]
    history = [{"type": "message", "role": "user", "content": "first"},
               {"type": "message", "role": "assistant", "id": "msg_x", "status": "completed",
                "content": answer}]  # fmt: skip
    out = chat({"model": "m", "input": "second", "instructions": "I"}, history)
    assert [m["content"] for m in out["messages"]] == ["I", "first", "one", "second"]


def test_the_echo_has_openai_s_defaults() -> None:
    req = ResponsesRequest.model_validate({"model": "m", "input": "x", "tools": [WEATHER]})
    shown = echo(req)
    assert shown["tool_choice"] == "auto" and shown["parallel_tool_calls"] is True
    assert shown["text"] == {"format": {"type": "text"}, "verbosity": "medium"}
    assert shown["store"] is True and shown["background"] is False
    assert shown["tools"][0]["type"] == "function" and shown["tools"][0]["strict"] is True
    assert items_of(req) == [{"type": "message", "role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "input": "x", "frequency_penalty": 1}, "frequency_penalty"),
        ({"model": "m", "input": "x", "background": True, "store": False}, "store"),
        ({"model": "m", "input": "x", "tool_choice": "required"}, "tool_choice"),
        ({"model": "m", "input": "x", "tools": [WEATHER],
          "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
        ({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}, "input[0]"),
        ({"model": "m", "input": [{"role": "user", "content": [{"type": "output_text",
          "text": "x"}]}]}, "input[0].content[0]"),
        ({"model": "m", "input": [{"role": "user", "content": [
          {"type": "input_image", "image_url": "ftp://x"}]}]}, "input[0].content[0].image_url"),
        ({"model": "m", "input": "x", "max_output_tokens": 3}, "max_output_tokens"),
        ({"model": "m", "input": "x", "metadata": {str(i): "v" for i in range(17)}}, "metadata"),
    ],
)  # fmt: skip
def test_what_openai_refuses_is_refused_naming_the_field(body: dict[str, Any], param: str) -> None:
    assert refused(body)[0] == param


def test_a_translation_chat_refuses_names_the_input() -> None:
    with pytest.raises(InvalidRequest) as info:
        chat({"model": "m", "input": [{"type": "function_call_output", "call_id": "c",
                                       "output": ""}]})  # fmt: skip
    assert info.value.param == "input"
