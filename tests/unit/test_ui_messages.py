"""useChat's UIMessages (gateway/ui_messages.py): validated strictly where they are read,
translated into the Chat Completions messages the upstream is sent."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.errors import from_validation_error
from gateway.request import Message
from gateway.ui_messages import DENIED, UIChatRequest, to_chat_messages
from sluice.errors import InvalidRequest

PNG = "data:image/png;base64,iVBORw0KGgo="


def translate(*messages: dict[str, Any]) -> list[dict[str, Any]]:
    request = UIChatRequest.model_validate({"id": "chat-1", "messages": list(messages)})
    out = to_chat_messages(request.messages)
    for message in out:  # every message is one /v1 accepts
        Message.model_validate(message)
    return out


def user(*parts: dict[str, Any], id: str = "u1") -> dict[str, Any]:
    return {"id": id, "role": "user", "parts": list(parts)}


def txt(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def error_of(body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(ValidationError) as caught:
        UIChatRequest.model_validate(body)
    return from_validation_error(caught.value)


def test_text_and_files_become_user_content_parts() -> None:
    pdf = "data:application/pdf;base64,JVBERi0="
    wav = "data:audio/wav;base64,UklGRg=="
    got = translate(
        {"id": "s", "role": "system", "parts": [txt("Be brief.")]},
        user(txt("Hi")),
        user(
            txt("Look"),
            {"type": "file", "mediaType": "image/png", "url": PNG, "filename": "a.png"},
            {"type": "file", "mediaType": "application/pdf", "url": pdf, "filename": "d.pdf"},
            {"type": "file", "mediaType": "audio/wav", "url": wav},
            {"type": "data-note", "data": {"x": 1}},
        ),
    )
    assert got == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": [
            {"type": "text", "text": "Look"},
            {"type": "image_url", "image_url": {"url": PNG}},
            {"type": "file", "file": {"file_data": pdf, "filename": "d.pdf"}},
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        ]},
    ]  # fmt: skip


def test_assistant_steps_carry_answered_tool_calls_and_their_results() -> None:
    assistant = {
        "id": "a1",
        "role": "assistant",
        "parts": [
            {"type": "step-start"},
            {"type": "reasoning", "text": "not sent back", "state": "done"},
            {"type": "text", "text": "Checking", "state": "done", "providerMetadata": {}},
            {"type": "tool-get_weather", "toolCallId": "c1", "state": "output-available",
             "input": {"city": "Paris"}, "output": {"sky": "clear"}},
            {"type": "dynamic-tool", "toolName": "lookup", "toolCallId": "c2",
             "state": "output-error", "input": {}, "errorText": "offline"},
            {"type": "tool-ask", "toolCallId": "c3", "state": "output-denied", "input": {},
             "approval": {"id": "ap", "approved": False}},
            {"type": "tool-pending", "toolCallId": "c4", "state": "input-available", "input": {}},
            {"type": "step-start"},
            {"type": "text", "text": "It is clear."},
            {"type": "source-url", "sourceId": "s", "url": "https://example.com"},
        ],
    }  # fmt: skip
    got = translate(user(txt("Weather?")), assistant, user(txt("Thanks")))
    calls = got[1]["tool_calls"]
    assert got[1]["content"] == "Checking"
    assert [c["id"] for c in calls] == ["c1", "c2", "c3"]  # c4 has no result: left out
    assert calls[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert calls[1]["function"]["name"] == "lookup"
    assert got[2:5] == [
        {"role": "tool", "tool_call_id": "c1", "content": '{"sky": "clear"}'},
        {"role": "tool", "tool_call_id": "c2", "content": "offline"},
        {"role": "tool", "tool_call_id": "c3", "content": DENIED},
    ]
    assert got[5] == {"role": "assistant", "content": "It is clear."}
    assert got[6] == {"role": "user", "content": "Thanks"}


def test_a_text_encoded_tool_input_is_a_custom_call() -> None:
    part = {"type": "tool-grep", "toolCallId": "c", "state": "output-available",
            "inputEncoding": "text", "input": "needle", "output": "found"}  # fmt: skip
    got = translate(user(txt("x")), {"id": "a", "role": "assistant", "parts": [part]})
    assert got[1]["tool_calls"] == [
        {"id": "c", "type": "custom", "custom": {"name": "grep", "input": "needle"}}
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [user(txt("x"))]}, "id"),
        ({"id": "c", "messages": []}, "messages"),
        ({"id": "has space", "messages": [user(txt("x"))]}, "id"),
        ({"id": "c", "messages": [user({"type": "picture"})]}, "messages[0].parts[0]"),
        ({"id": "c", "messages": [user({"type": "text", "text": 5})]}, "messages[0].parts[0].text"),
        ({"id": "c", "messages": [{"id": "u", "role": "user", "parts": []}]}, "messages[0].parts"),
        ({"id": "c", "messages": [{"id": "u", "role": "tool", "parts": [txt("x")]}]},
         "messages[0].role"),
        ({"id": "c", "messages": [user(txt("x"))], "trigger": "resume-stream"}, "trigger"),
        ({"id": "c", "messages": [user({"type": "tool-x", "toolCallId": "c",
                                        "state": "input-available"})]}, "messages[0].parts[0]"),
        ({"id": "c", "messages": [{"id": "a", "role": "assistant", "parts": [
            {"type": "tool-bad name", "toolCallId": "c", "state": "output-available"}]}]},
         "messages[0].parts[0].type"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_naming_its_field(body: dict[str, Any], param: str) -> None:
    assert error_of(body).param == param


def test_files_the_gateway_would_have_to_fetch_are_refused() -> None:
    link = {"type": "file", "mediaType": "application/pdf", "url": "https://x/d.pdf"}
    request = UIChatRequest.model_validate({"id": "c", "messages": [user(txt("x"), link)]})
    with pytest.raises(InvalidRequest) as caught:
        to_chat_messages(request.messages)
    assert caught.value.param == "messages[0].parts[1].url"


def test_a_conversation_with_nothing_to_send_is_refused() -> None:
    request = UIChatRequest.model_validate({"id": "c", "messages": [user({"type": "data-x"})]})
    with pytest.raises(InvalidRequest, match="nothing to send"):
        to_chat_messages(request.messages)
