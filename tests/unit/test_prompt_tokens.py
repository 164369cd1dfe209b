"""Prompt accounting beyond plain text: tool definitions, tool calls, images, audio, files.

The figures are OpenAI's published ones: the cookbook "How to count tokens with tiktoken"
(its tool example: 105 prompt tokens on gpt-3.5-turbo and gpt-4, 101 on gpt-4o and
gpt-4o-mini, as the API counted them) and the vision guide's image examples.
"""

from __future__ import annotations

from typing import Any

import pytest

from sluice.errors import ContextLengthExceeded
from sluice.models import ModelInfo, lookup
from sluice.tokens import (
    GPT4_TOOLS,
    GPT4O_TOOLS,
    count_message,
    count_messages,
    count_prompt,
    count_text,
    count_tools,
    fit_to_context,
    tool_constants,
)

# the cookbook's example request
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "The city and state, e.g. San Francisco, CA",
                },
                "unit": {
                    "type": "string",
                    "description": "The unit of temperature to return",
                    "enum": ["celsius", "fahrenheit"],
                },
            },
            "required": ["location"],
        },
    },
}
WEATHER_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


def _model(name: str) -> ModelInfo:
    return lookup(name, 8192)


# -- tool definitions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_tool_definitions_match_the_cookbooks_api_counts(model: str, expected: int) -> None:
    count = count_prompt(WEATHER_MESSAGES, _model(model), [WEATHER_TOOL])
    assert count.tokens == expected
    assert not count.estimated


def test_tool_definitions_are_counted_term_by_term() -> None:
    enc = "o200k_base"
    k = GPT4O_TOOLS
    props = WEATHER_TOOL["function"]["parameters"]["properties"]
    expected = (
        k.function
        + count_text("get_current_weather:Get the current weather in a given location", enc)
        + k.properties
        + k.property
        + count_text(f"location:string:{props['location']['description']}", enc)
        + k.property
        + k.enum
        + (k.enum_item + count_text("celsius", enc))
        + (k.enum_item + count_text("fahrenheit", enc))
        + count_text("unit:string:The unit of temperature to return", enc)
        + k.end
    )
    assert count_tools([WEATHER_TOOL], _model("gpt-4o")).tokens == expected
    # the list's end is counted once, each function's start once per function
    two = count_tools([WEATHER_TOOL, WEATHER_TOOL], _model("gpt-4o")).tokens
    assert two == 2 * expected - k.end


def test_a_final_period_of_a_description_is_not_counted() -> None:
    plain = {"type": "function", "function": {"name": "f", "description": "Does things"}}
    dotted = {"type": "function", "function": {"name": "f", "description": "Does things."}}
    model = _model("gpt-4o")
    assert count_tools([dotted], model) == count_tools([plain], model)


def test_no_tools_count_nothing() -> None:
    assert count_tools(None, _model("gpt-4o")).tokens == 0
    assert count_tools([], _model("gpt-4o")).tokens == 0


def test_tool_constants_per_family_and_estimated_elsewhere() -> None:
    assert tool_constants(_model("gpt-4o-2024-08-06")) == (GPT4O_TOOLS, False)
    assert tool_constants(_model("gpt-4o-mini-2024-07-18")) == (GPT4O_TOOLS, False)
    assert tool_constants(_model("gpt-4-0613")) == (GPT4_TOOLS, False)
    assert tool_constants(_model("gpt-3.5-turbo-0125")) == (GPT4_TOOLS, False)
    # not measured by the cookbook: the constants of the family sharing the encoding
    assert tool_constants(_model("gpt-4-turbo")) == (GPT4_TOOLS, True)
    assert tool_constants(_model("gpt-4.1")) == (GPT4O_TOOLS, True)
    assert tool_constants(_model("llama3.1:8b")) == (GPT4O_TOOLS, True)
    assert count_tools([WEATHER_TOOL], _model("gpt-4.1")).estimated


def test_schema_parts_the_formula_does_not_cover_count_as_json_and_are_estimated() -> None:
    nested = {
        "type": "function",
        "function": {
            "name": "book",
            "description": "Book rooms",
            "parameters": {
                "type": "object",
                "properties": {
                    "rooms": {
                        "type": "array",
                        "description": "The rooms",
                        "items": {"type": "object", "properties": {"beds": {"type": "integer"}}},
                    }
                },
                "required": ["rooms"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
    flat = {
        "type": "function",
        "function": {
            "name": "book",
            "description": "Book rooms",
            "parameters": {
                "type": "object",
                "properties": {"rooms": {"type": "array", "description": "The rooms"}},
            },
        },
    }
    model = _model("gpt-4o")
    assert not count_tools([flat], model).estimated
    nested_count = count_tools([nested], model)
    assert nested_count.estimated
    assert nested_count.tokens > count_tools([flat], model).tokens


def test_custom_tools_are_counted_and_estimated() -> None:
    custom = {
        "type": "custom",
        "custom": {
            "name": "sql",
            "description": "Run a query",
            "format": {"type": "grammar", "grammar": {"syntax": "lark", "definition": "x"}},
        },
    }
    count = count_tools([custom], _model("gpt-4o"))
    assert count.estimated
    assert count.tokens > GPT4O_TOOLS.function + GPT4O_TOOLS.end + count_text(
        "sql:Run a query", "o200k_base"
    )


# -- tool calls and results -------------------------------------------------------------


def test_assistant_tool_calls_count_their_name_and_arguments() -> None:
    enc = "o200k_base"
    arguments = '{"location": "Paris, France", "unit": "celsius"}'
    call = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_current_weather", "arguments": arguments},
            },
            {"id": "call_2", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}},
        ],
    }
    expected = (
        3
        + count_text("assistant", enc)
        + count_text("get_current_weather", enc)
        + count_text(arguments, enc)
        + count_text("sql", enc)
        + count_text("SELECT 1", enc)
    )
    assert count_message(call, enc) == expected
    count = count_prompt([call], _model("gpt-4o"))
    assert count.tokens == expected + 3
    assert count.estimated  # the framing of a call is not documented


def test_tool_results_count_their_call_id_and_content() -> None:
    enc = "o200k_base"
    result = {"role": "tool", "tool_call_id": "call_abc123", "content": "22 degrees"}
    expected = (
        3 + count_text("tool", enc) + count_text("call_abc123", enc) + count_text("22 degrees", enc)
    )
    assert count_message(result, enc) == expected
    assert not count_prompt([result], _model("gpt-4o")).estimated


def test_text_and_refusal_parts_count_as_text() -> None:
    enc = "o200k_base"
    parts = {
        "role": "assistant",
        "content": [{"type": "text", "text": "Hello "}, {"type": "refusal", "refusal": "no"}],
    }
    assert count_message(parts, enc) == 3 + count_text("assistant", enc) + count_text(
        "Hello no", enc
    )


# -- trimming with the new counts ---------------------------------------------------------


def _words(role: str, words: int, tag: str) -> dict[str, Any]:
    return {"role": role, "content": (tag + " " + "word " * words).strip()}


def test_tool_definitions_shrink_the_budget_and_are_never_dropped() -> None:
    messages = [_words("system", 5, "sys"), _words("user", 150, "u1"), _words("user", 20, "u2")]
    # room for the messages and 30 tokens more: the tool definitions need 68
    window = count_messages(messages, "o200k_base") + 100 + 30
    model = ModelInfo("gpt-4o", window, "o200k_base")
    without = fit_to_context(messages, model, 100, 0)
    assert without.dropped == 0
    fitted = fit_to_context(messages, model, 100, 0, tools=[WEATHER_TOOL])
    assert [m["content"].split()[0] for m in fitted.messages] == ["sys", "u2"]
    tools = count_tools([WEATHER_TOOL], model).tokens
    assert fitted.prompt_tokens == count_messages(fitted.messages, "o200k_base") + tools
    assert fitted.prompt_tokens == count_messages(
        fitted.messages, "o200k_base", model="gpt-4o", tools=[WEATHER_TOOL]
    )
    assert fitted.prompt_tokens + 100 <= window
    assert not fitted.estimated


def test_tool_definitions_that_cannot_fit_are_rejected_as_tools() -> None:
    model = ModelInfo("gpt-4o", 100, "o200k_base")
    with pytest.raises(ContextLengthExceeded) as info:
        fit_to_context([_words("user", 1, "u")], model, 40, 0, tools=[WEATHER_TOOL])
    assert info.value.param == "tools"


def test_the_positional_signature_still_works() -> None:
    model = ModelInfo("m", 1000, "cl100k_base")
    fitted = fit_to_context([_words("user", 5, "u")], model, 100, 256)
    assert (fitted.dropped, fitted.estimated) == (0, False)


def test_a_turn_with_tool_calls_goes_with_its_results() -> None:
    """The calls' arguments now count: a big call makes its turn (and its results) go."""
    model = ModelInfo("gpt-4o", 300, "o200k_base")
    call = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "write", "arguments": '{"text": "' + "word " * 150 + '"}'},
            }
        ],
    }
    messages = [
        _words("developer", 5, "dev"),
        _words("user", 5, "u1"),
        call,
        {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        _words("user", 20, "u2"),
    ]
    fitted = fit_to_context(messages, model, 100, 0)
    assert [m["role"] for m in fitted.messages] == ["developer", "user"]
    assert fitted.messages[-1]["content"].startswith("u2")
    assert fitted.dropped == 3
    assert not fitted.estimated  # the estimated call was dropped: what is left is exact
