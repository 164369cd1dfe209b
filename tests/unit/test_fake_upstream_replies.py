"""The fake upstream's pure functions: how it reads a model name, and the tricky replies
it streams (its wire behaviour is tested over real HTTP in tests/redis/test_fake_upstream.py)."""

from __future__ import annotations

import json

from devtools.fake_upstream import (
    ARGUMENT_PIECE,
    REFUSAL_TEXT,
    expected_logprobs,
    expected_refusal,
    expected_reply,
    expected_tool_calls,
    parse_model,
    prompt_tokens,
    schema_value,
    split_json,
    split_pieces,
)

HELLO = [{"role": "user", "content": "Say hi — ça va? 🙂"}]


def test_parse_model() -> None:
    assert parse_model("slow;words=40;delay=0.05") == ("slow", {"words": "40", "delay": "0.05"})
    assert parse_model("gpt-4o-mini") == ("openai", {})
    assert parse_model("sluice-demo;words=3") == ("openai", {"words": "3"})
    assert parse_model("http-429-then-ok;failures=2") == ("http-429-then-ok", {"failures": "2"})


def test_reply_text_is_tricky_and_pieces_rejoin() -> None:
    body = {"model": "openai", "messages": HELLO}
    text = expected_reply(body)
    assert "«Say hi — ça va? 🙂»" in text
    assert "\n" in text.strip() and "\u2028" in text
    assert any(len(ch.encode()) > 2 for ch in text)
    assert "".join(split_pieces(text)) == text
    assert all(len(p) <= 5 for p in split_pieces(text))
    assert expected_reply(body, 1).startswith("[choice 1] ")
    assert expected_reply(body) == expected_reply({**body, "messages": [HELLO[0]]})
    parts = [{"role": "user", "content": [{"type": "text", "text": "Say hi — ça va? 🙂"}]}]
    assert expected_reply({**body, "messages": parts}) == text
    longer = expected_reply({**body, "model": "openai;words=30"})
    assert len(longer) > len(text)


# --------------------------------------------------------------------------- tools and JSON

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 3},
                "detail": {"type": "number"},
                "hourly": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "when": {"type": "object", "properties": {"date": {"type": "string"}}},
            },
        },
    },
}
LOOKUP = {"type": "function", "function": {"name": "lookup"}}
SHELL = {"type": "custom", "custom": {"name": "shell"}}


def calls_without_ids(body: dict) -> list[dict]:
    return [{k: v for k, v in c.items() if k != "id"} for c in expected_tool_calls(body)]


def test_tool_arguments_are_built_from_the_schema() -> None:
    body = {"model": "openai", "messages": HELLO, "tools": [WEATHER]}
    [call] = expected_tool_calls(body)
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert call["function"]["arguments"] == (
        '{"city":"Paris","unit":"celsius","days":3,"detail":1.5,"hourly":true,"tags":[],'
        '"when":{"date":"date-value"}}'
    )
    assert expected_reply(body) == "" and expected_logprobs(body) == []
    assert calls_without_ids({**body, "tools": [LOOKUP]}) == [
        {"type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    ]


def test_which_tools_are_called() -> None:
    body = {"model": "openai;calls=3", "messages": HELLO, "tools": [WEATHER, LOOKUP]}
    assert [c["function"]["name"] for c in expected_tool_calls(body)] == [
        "get_weather",
        "lookup",
        "get_weather",
    ]
    assert len(expected_tool_calls({**body, "parallel_tool_calls": False})) == 1
    named = {"type": "function", "function": {"name": "lookup"}}
    assert [c["function"]["name"] for c in expected_tool_calls({**body, "tool_choice": named})] == [
        "lookup"
    ]
    assert expected_tool_calls({**body, "tool_choice": "none"}) == []
    assert expected_tool_calls({**body, "tool_choice": "required"}) != []
    assert expected_tool_calls({"model": "openai", "messages": HELLO}) == []
    assert calls_without_ids({"model": "tools", "messages": HELLO}) == [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    ]
    assert calls_without_ids({"model": "openai", "messages": HELLO, "tools": [SHELL]}) == [
        {
            "type": "custom",
            "custom": {"name": "shell", "input": "Input for shell from the Sluice demo upstream."},
        }
    ]


def test_a_tool_result_gets_text_that_quotes_it() -> None:
    messages = [
        *HELLO,
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1"}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C and sunny"},
    ]
    body = {"model": "tools", "messages": messages, "tools": [WEATHER]}
    assert expected_tool_calls(body) == []
    assert "The tool said: «18°C and sunny»." in expected_reply(body)


def test_max_tokens_cuts_the_arguments() -> None:
    body = {"model": "openai", "messages": HELLO, "tools": [WEATHER], "max_tokens": 3}
    [call] = expected_tool_calls(body)
    assert call["function"]["arguments"] == '{"city":"Par'  # 3 pieces of 4 characters
    assert split_json('{"city":"Paris"}') == ['{"ci', 'ty":', '"Par', 'is"}']
    assert ARGUMENT_PIECE == 4


def test_structured_output() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "kind": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Kind"}]},
            "scores": {"type": "array", "items": {"type": "number"}, "minItems": 2},
        },
        "required": ["name", "kind", "scores"],
        "additionalProperties": False,
        "$defs": {"Kind": {"type": "string", "enum": ["cat", "dog"]}},
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "pet", "schema": schema, "strict": True}}
    body = {"model": "openai", "messages": HELLO, "response_format": fmt}
    assert json.loads(expected_reply(body)) == {
        "name": "name-value",
        "kind": "cat",
        "scores": [1.5, 1.5],
    }
    plain = expected_reply({"model": "openai", "messages": HELLO})
    as_object = expected_reply({**body, "response_format": {"type": "json_object"}})
    assert json.loads(as_object) == {"answer": plain}
    assert schema_value({"type": "integer", "maximum": 0}) == 0


def test_refusal_and_logprobs() -> None:
    body = {"model": "refusal", "messages": HELLO, "logprobs": True, "top_logprobs": 3}
    assert expected_refusal() == REFUSAL_TEXT == "I'm sorry, I can't help with that request."
    assert expected_refusal(body) == REFUSAL_TEXT and expected_reply(body) == ""
    entries = expected_logprobs(body)
    assert "".join(e["token"] for e in entries) == REFUSAL_TEXT
    for entry in entries:
        assert entry["logprob"] < 0 and entry["bytes"] == list(entry["token"].encode())
        assert len(entry["top_logprobs"]) == 3
        assert entry["top_logprobs"][0] == {k: entry[k] for k in ("token", "logprob", "bytes")}
    assert expected_logprobs(body) == entries  # deterministic
    text = {"model": "openai", "messages": HELLO, "top_logprobs": 20}
    assert all(len(e["top_logprobs"]) == 20 for e in expected_logprobs(text))
    assert len({e["token"] for e in expected_logprobs(text)[0]["top_logprobs"]}) == 20


def test_echo_and_attachments() -> None:
    body = {"model": "echo", "messages": HELLO, "temperature": 0.5, "tools": [WEATHER]}
    assert json.loads(expected_reply(body)) == {k: v for k, v in body.items() if k != "messages"}
    parts = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,AA", "filename": "a"}},
    ]
    body = {"model": "openai", "messages": [{"role": "user", "content": parts}]}
    assert "You said: «What is this?» [2 images, 1 audio clip, 1 file]." in expected_reply(body)
    assert prompt_tokens(body) == 3 + 3 + 3
