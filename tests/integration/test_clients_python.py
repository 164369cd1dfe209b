"""Real Python client libraries, unchanged, against the gateway's ``/v1``: tool calls
(streamed and not, parallel, the tool-result round trip), structured output, logprobs and
a data-URL image part, through each library's own API.

- openai 3.x (the venv's) runs here; openai 2.x runs the same scenarios in a child Python
  with ``.venv/openai2`` (``make openai2``) first on its path;
- LangChain (``langchain-openai``'s ``ChatOpenAI``) and litellm run here, on openai 3.x;
- LlamaIndex's ``OpenAILike`` runs in that child too: its ``llama-index-llms-openai`` needs
  openai<3, so openai 2.x is what its users have.

Every answer is compared with what the fake upstream says it sent for the request it
recorded (``expected_reply``, ``expected_tool_calls``, ``expected_logprobs``), so a
gateway that drops, reorders or rewrites a field fails here. One child run serves all the
child's tests (its imports take seconds).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import openai  # the venv's 3.x here; 2.x in the child, which has .venv/openai2 first
import pytest
from pydantic import BaseModel

from devtools.fake_upstream import expected_logprobs, expected_reply, expected_tool_calls
from tests.helpers.support import ROOT

# litellm fetches a model price list from GitHub on import unless told to use its own copy
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

pytestmark = pytest.mark.integration

OPENAI2 = ROOT / ".venv" / "openai2"
RUN = secrets.token_hex(4)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}
TOOL_RESULT = '{"temperature_c": 21, "sky": "clear"}'
# a 1x1 PNG
PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


class Forecast(BaseModel):
    city: str
    temperature_c: float
    conditions: Literal["sunny", "rainy"]


class GetWeather(BaseModel):
    """The current weather in a city."""

    city: str


# what the fake upstream builds for Forecast's schema (devtools.fake_upstream.schema_value)
FORECAST = {"city": "Paris", "temperature_c": 1.5, "conditions": "sunny"}


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return TOOL_RESULT


def get_time(zone: str) -> str:
    """The time in a time zone."""
    return "12:00"


def prompt_for(name: str) -> str:
    """A prompt unique to one scenario of this session (the child gets the same ones)."""
    return f"client {name} {RUN}"


def image_content(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": PNG}}]


def plain(calls: Any) -> list[dict[str, Any]]:
    """openai's tool calls as the non-streamed message's dicts, without the random ids."""
    return [
        {"type": c.type, "function": {"name": c.function.name, "arguments": c.function.arguments}}
        for c in calls or ()
    ]


# --------------------------------------------------------------------------- openai (2.x, 3.x)
# Each scenario takes an openai.OpenAI and returns what the client made of the answers as
# JSON-able values, so the same code runs here (3.x) and in the child (2.x).


def openai_tools(client: Any, tag: str) -> dict[str, Any]:
    result = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": prompt_for(f"{tag}-tools")}],
        tools=[WEATHER, TIME],
    )
    choice = result.choices[0]
    return {
        "finish_reason": choice.finish_reason,
        "content": choice.message.content,
        "calls": plain(choice.message.tool_calls),
        "ids": [c.id for c in choice.message.tool_calls or ()],
    }


def openai_tools_stream_parallel(client: Any, tag: str) -> dict[str, Any]:
    """Parallel calls streamed: reassembled from the deltas by index, as OpenAI's docs do."""
    stream = client.chat.completions.create(
        model="gpt-4o-mini;calls=2",
        messages=[{"role": "user", "content": prompt_for(f"{tag}-tools-stream")}],
        tools=[WEATHER, TIME],
        parallel_tool_calls=True,
        stream=True,
    )
    calls: dict[int, dict[str, Any]] = {}
    finish = []
    for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or ():
                call = calls.setdefault(
                    delta.index, {"id": "", "type": "", "function": {"name": "", "arguments": ""}}
                )
                call["id"] += delta.id or ""
                call["type"] += delta.type or ""
                if delta.function is not None:
                    call["function"]["name"] += delta.function.name or ""
                    call["function"]["arguments"] += delta.function.arguments or ""
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    ordered = [calls[i] for i in sorted(calls)]
    return {
        "finish": finish,
        "indexes": sorted(calls),
        "ids": [c.pop("id") for c in ordered],
        "calls": ordered,
    }


def openai_tools_stream_helper(client: Any, tag: str) -> dict[str, Any]:
    """The SDK's own stream helper assembles the call and parses strict arguments."""
    with client.chat.completions.stream(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": prompt_for(f"{tag}-tools-helper")}],
        tools=[openai.pydantic_function_tool(GetWeather)],
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    return {
        "events": sorted(set(events)),
        "name": call.function.name,
        "parsed": call.function.parsed_arguments.model_dump(),
        "finish_reason": final.choices[0].finish_reason,
    }


def openai_round_trip(client: Any, tag: str) -> dict[str, Any]:
    """The cookbook's loop: append the assistant message object, then each tool's result."""
    messages: list[Any] = [{"role": "user", "content": prompt_for(f"{tag}-round-trip")}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
    message = first.choices[0].message
    messages.append(message)
    for call in message.tool_calls:
        result = get_weather(**json.loads(call.function.arguments))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    second = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
    return {
        "calls": plain(message.tool_calls),
        "content": second.choices[0].message.content,
        "finish_reason": second.choices[0].finish_reason,
        "tool_calls": plain(second.choices[0].message.tool_calls),
    }


def openai_parse(client: Any, tag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, parse in (
        ("parse", client.chat.completions.parse),
        ("beta", client.beta.chat.completions.parse),
    ):
        result = parse(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": prompt_for(f"{tag}-{name}")}],
            response_format=Forecast,
        )
        message = result.choices[0].message
        out[name] = {"parsed": message.parsed.model_dump(), "refusal": message.refusal}
    with client.chat.completions.stream(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": prompt_for(f"{tag}-parse-stream")}],
        response_format=Forecast,
    ) as stream:
        final = stream.get_final_completion()
    out["stream"] = {"parsed": final.choices[0].message.parsed.model_dump()}
    return out


def openai_logprobs(client: Any, tag: str) -> dict[str, Any]:
    result = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": prompt_for(f"{tag}-logprobs")}],
        logprobs=True,
        top_logprobs=2,
    )
    choice = result.choices[0]
    streamed = []
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": prompt_for(f"{tag}-logprobs-stream")}],
        logprobs=True,
        top_logprobs=2,
        stream=True,
    ):
        if chunk.choices and chunk.choices[0].logprobs is not None:
            streamed += [e.model_dump() for e in chunk.choices[0].logprobs.content or ()]
    return {
        "content": choice.message.content,
        "logprobs": [e.model_dump() for e in choice.logprobs.content],
        "streamed": streamed,
    }


def openai_image(client: Any, tag: str) -> dict[str, Any]:
    result = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": image_content(prompt_for(f"{tag}-image"))}],
    )
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "user", "content": image_content(prompt_for(f"{tag}-image-stream"))}
            ],
            stream=True,
        )
        if chunk.choices
    )
    return {"content": result.choices[0].message.content, "streamed": text}


OPENAI_SCENARIOS: dict[str, Callable[[Any, str], dict[str, Any]]] = {
    "tools": openai_tools,
    "tools_stream_parallel": openai_tools_stream_parallel,
    "tools_stream_helper": openai_tools_stream_helper,
    "round_trip": openai_round_trip,
    "parse": openai_parse,
    "logprobs": openai_logprobs,
    "image": openai_image,
}


# --------------------------------------------------------------------------- LlamaIndex (child)


def llama_llm(base_url: str, **options: Any) -> Any:
    from llama_index.llms.openai_like import OpenAILike

    return OpenAILike(
        model=options.pop("model", "gpt-4o-mini"),
        api_base=base_url,
        api_key="not-used",
        is_chat_model=True,
        is_function_calling_model=True,
        context_window=128000,
        max_retries=0,
        **options,
    )


def llama_selections(llm: Any, response: Any) -> list[dict[str, Any]]:
    return [
        {"name": s.tool_name, "kwargs": s.tool_kwargs, "id": s.tool_id}
        for s in llm.get_tool_calls_from_response(response, error_on_no_tool_call=True)
    ]


def llama_tools(base_url: str) -> dict[str, Any]:
    from llama_index.core.tools import FunctionTool

    tools = [FunctionTool.from_defaults(fn=get_weather), FunctionTool.from_defaults(fn=get_time)]
    llm = llama_llm(base_url)
    response = llm.chat_with_tools(tools, user_msg=prompt_for("llama-tools"))
    parallel = llama_llm(base_url, model="gpt-4o-mini;calls=2")
    *_, streamed = parallel.stream_chat_with_tools(
        tools, user_msg=prompt_for("llama-tools-stream"), allow_parallel_tool_calls=True
    )
    return {
        "calls": llama_selections(llm, response),
        "streamed": llama_selections(parallel, streamed),
    }


def llama_round_trip(base_url: str) -> dict[str, Any]:
    from llama_index.core.llms import ChatMessage
    from llama_index.core.tools import FunctionTool

    tool = FunctionTool.from_defaults(fn=get_weather)
    llm = llama_llm(base_url)
    history = [ChatMessage(role="user", content=prompt_for("llama-round-trip"))]
    response = llm.chat_with_tools([tool], chat_history=history)
    history.append(response.message)
    for selection in llm.get_tool_calls_from_response(response):
        output = tool.call(**selection.tool_kwargs)
        history.append(
            ChatMessage(
                role="tool",
                content=str(output),
                additional_kwargs={"tool_call_id": selection.tool_id, "name": tool.metadata.name},
            )
        )
    final = llm.chat_with_tools([tool], chat_history=history)
    return {
        "calls": llama_selections(llm, response),
        "content": final.message.content,
        "again": llm.get_tool_calls_from_response(final, error_on_no_tool_call=False) != [],
    }


def llama_structured(base_url: str) -> dict[str, Any]:
    from llama_index.core.llms import ChatMessage
    from llama_index.core.prompts import PromptTemplate

    llm = llama_llm(base_url)
    predicted = llm.structured_predict(
        Forecast, PromptTemplate("{text}"), text=prompt_for("llama-structured")
    )
    structured = llm.as_structured_llm(Forecast)
    response = structured.chat([ChatMessage(role="user", content=prompt_for("llama-sllm"))])
    return {"predicted": predicted.model_dump(), "sllm": response.raw.model_dump()}


def llama_logprobs_and_image(base_url: str) -> dict[str, Any]:
    import base64

    from llama_index.core.base.llms.types import ImageBlock, TextBlock
    from llama_index.core.llms import ChatMessage

    llm = llama_llm(base_url, logprobs=True, top_logprobs=2)
    response = llm.chat([ChatMessage(role="user", content=prompt_for("llama-logprobs"))])
    png = base64.b64decode(PNG.partition(",")[2])
    image = ChatMessage(
        role="user",
        blocks=[
            TextBlock(text=prompt_for("llama-image")),
            ImageBlock(image=png, image_mimetype="image/png"),
        ],
    )
    seen = llama_llm(base_url).chat([image])
    return {
        "content": response.message.content,
        "logprobs": [
            [{"token": p.token, "logprob": p.logprob} for p in e] for e in response.logprobs
        ],
        "image": seen.message.content,
    }


LLAMA_SCENARIOS: dict[str, Callable[[str], dict[str, Any]]] = {
    "tools": llama_tools,
    "round_trip": llama_round_trip,
    "structured": llama_structured,
    "logprobs_image": llama_logprobs_and_image,
}


def child_main() -> None:
    """In the child: run every openai 2.x and LlamaIndex scenario against argv[1] (the
    gateway's /v1) and print one JSON line, each result or the traceback that ended it."""
    base_url, run = sys.argv[1], sys.argv[2]
    global RUN
    RUN = run
    out: dict[str, Any] = {"versions": {"openai": openai.__version__}}
    client = openai.OpenAI(base_url=base_url, api_key="not-used", max_retries=0)
    jobs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        (f"openai/{name}", lambda f=f: f(client, "openai-2"))
        for name, f in OPENAI_SCENARIOS.items()
    ] + [(f"llama/{name}", lambda f=f: f(base_url)) for name, f in LLAMA_SCENARIOS.items()]
    for key, job in jobs:
        try:
            out[key] = {"ok": job()}
        except Exception:  # reported to the parent test, which fails with it
            out[key] = {"error": traceback.format_exc()}
    from importlib.metadata import version

    out["versions"]["llama-index-core"] = version("llama-index-core")
    print(json.dumps(out))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def child_results(gateway_url: str) -> dict[str, Any]:
    """One child Python, openai 2.x first on its path, runs the scenarios of both."""
    if not (OPENAI2 / "openai").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{OPENAI2} is missing (make test installs it: make openai2)")
        pytest.skip("needs `make openai2` (openai 2.x and LlamaIndex beside the venv)")
    script = "from tests.integration.test_clients_python import child_main; child_main()"
    done = subprocess.run(
        [sys.executable, "-c", script, f"{gateway_url}/v1", RUN],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(OPENAI2), str(ROOT)])},
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["versions"]["openai"].startswith("2."), results["versions"]
    return dict(results)


def from_child(results: dict[str, Any], key: str) -> dict[str, Any]:
    result = results[key]
    if "error" in result:
        pytest.fail(f"{key} raised in the child:\n{result['error']}", pytrace=False)
    return dict(result["ok"])


@dataclass
class Sdk:
    """One openai major: ``run`` gives a scenario's result, ``prompt`` its prompts."""

    tag: str
    run: Callable[[str], dict[str, Any]]

    def prompt(self, name: str) -> str:
        return prompt_for(f"{self.tag}-{name}")


@pytest.fixture(params=["openai-3", "openai-2"])
def sdk(request: pytest.FixtureRequest, gateway_url: str) -> Iterator[Sdk]:
    """Run an openai scenario with the venv's 3.x here, or take the child's 2.x result."""
    if request.param == "openai-2":
        results = request.getfixturevalue("child_results")
        yield Sdk("openai-2", lambda name: from_child(results, f"openai/{name}"))
        return
    assert openai.__version__.startswith("3."), openai.__version__
    client = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="not-used", max_retries=0)
    yield Sdk("openai-3", lambda name: OPENAI_SCENARIOS[name](client, "openai-3"))
    client.close()


def body_for(upstream: Any, last_content: Any) -> dict[str, Any]:
    """The request the fake upstream received whose last message's content is this."""
    for recorded in reversed(upstream.requests):
        messages = (recorded.body or {}).get("messages") or []
        if messages and messages[-1].get("content") == last_content:
            return dict(recorded.body)
    raise AssertionError(f"the upstream never saw {last_content!r}")


def is_tool(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") == "tool"


def round_trip_body(upstream: Any, first_prompt: str) -> dict[str, Any]:
    """The request that sent the tool results of the conversation begun with this prompt."""
    for recorded in reversed(upstream.requests):
        messages = (recorded.body or {}).get("messages") or []
        if messages and messages[0].get("content") == first_prompt and is_tool(messages[-1]):
            return dict(recorded.body)
    raise AssertionError(f"the upstream never saw the tool results after {first_prompt!r}")


def expected_calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in c.items() if k != "id"} for c in expected_tool_calls(body)]


# --------------------------------------------------------------------------- openai tests


def test_openai_tool_calls(sdk: Sdk, upstream: Any) -> None:
    result = sdk.run("tools")
    body = body_for(upstream, sdk.prompt("tools"))
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather", "get_time"]
    assert result["calls"] == expected_calls(body)
    assert result["calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    }
    assert result["finish_reason"] == "tool_calls" and result["content"] is None
    assert all(i.startswith("call_") for i in result["ids"]), result["ids"]


def test_openai_parallel_tool_calls_stream(sdk: Sdk, upstream: Any) -> None:
    result = sdk.run("tools_stream_parallel")
    body = body_for(upstream, sdk.prompt("tools-stream"))
    assert body["parallel_tool_calls"] is True
    assert result["indexes"] == [0, 1]
    assert result["calls"] == expected_calls(body)
    assert [c["function"]["name"] for c in result["calls"]] == ["get_weather", "get_time"]
    assert len(set(result["ids"])) == 2 and all(i.startswith("call_") for i in result["ids"])
    assert result["finish"] == ["tool_calls"]


def test_openai_stream_helper_parses_strict_tool_arguments(sdk: Sdk, upstream: Any) -> None:
    result = sdk.run("tools_stream_helper")
    body = body_for(upstream, sdk.prompt("tools-helper"))
    assert body["tools"][0]["function"]["strict"] is True
    assert result["name"] == "GetWeather" and result["parsed"] == {"city": "Paris"}
    assert result["finish_reason"] == "tool_calls"
    assert "tool_calls.function.arguments.delta" in result["events"], result["events"]


def test_openai_tool_result_round_trip(sdk: Sdk, upstream: Any) -> None:
    result = sdk.run("round_trip")
    body = round_trip_body(upstream, sdk.prompt("round-trip"))
    assert [m["role"] for m in body["messages"][-3:]] == ["user", "assistant", "tool"]
    assert body["messages"][-2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert body["messages"][-1]["tool_call_id"] == body["messages"][-2]["tool_calls"][0]["id"]
    assert result["calls"][0]["function"]["name"] == "get_weather"
    assert result["content"] == expected_reply(body)
    assert f"The tool said: «{TOOL_RESULT}»" in result["content"]
    assert result["finish_reason"] == "stop" and result["tool_calls"] == []


def test_openai_structured_output_parse(sdk: Sdk, upstream: Any) -> None:
    result = sdk.run("parse")
    for name in ("parse", "beta"):
        body = body_for(upstream, sdk.prompt(name))
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["strict"] is True
        assert result[name] == {"parsed": FORECAST, "refusal": None}
    assert result["stream"] == {"parsed": FORECAST}


def test_openai_logprobs(sdk: Sdk, upstream: Any) -> None:
    result = sdk.run("logprobs")
    body = body_for(upstream, sdk.prompt("logprobs"))
    assert result["content"] == expected_reply(body)
    assert result["logprobs"] == expected_logprobs(body)
    assert "".join(e["token"] for e in result["logprobs"]) == result["content"]
    assert all(len(e["top_logprobs"]) == 2 for e in result["logprobs"])
    streamed = body_for(upstream, sdk.prompt("logprobs-stream"))
    assert result["streamed"] == expected_logprobs(streamed)


def test_openai_image_part(sdk: Sdk, upstream: Any) -> None:
    result = sdk.run("image")
    body = body_for(upstream, image_content(sdk.prompt("image")))
    assert body["messages"][-1]["content"][1] == {"type": "image_url", "image_url": {"url": PNG}}
    assert result["content"] == expected_reply(body) and " [1 image]" in result["content"]
    streamed = body_for(upstream, image_content(sdk.prompt("image-stream")))
    assert result["streamed"] == expected_reply(streamed)


# --------------------------------------------------------------------------- LlamaIndex tests


def test_llamaindex_tool_calls(child_results: dict[str, Any], upstream: Any) -> None:
    result = from_child(child_results, "llama/tools")
    body = body_for(upstream, prompt_for("llama-tools"))
    assert body["parallel_tool_calls"] is False  # LlamaIndex sends it with every tool request
    assert [(c["name"], c["kwargs"]) for c in result["calls"]] == [
        ("get_weather", {"city": "Paris"})
    ]
    streamed = body_for(upstream, prompt_for("llama-tools-stream"))
    assert streamed["parallel_tool_calls"] is True
    assert [(c["name"], c["kwargs"]) for c in result["streamed"]] == [
        (c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in expected_calls(streamed)
    ]
    assert [c["name"] for c in result["streamed"]] == ["get_weather", "get_time"]


def test_llamaindex_tool_result_round_trip(child_results: dict[str, Any], upstream: Any) -> None:
    result = from_child(child_results, "llama/round_trip")
    body = round_trip_body(upstream, prompt_for("llama-round-trip"))
    assert body["messages"][-1]["tool_call_id"] == result["calls"][0]["id"]
    assert result["content"] == expected_reply(body)
    assert f"The tool said: «{TOOL_RESULT}»" in result["content"]
    assert result["again"] is False


def test_llamaindex_structured_output(child_results: dict[str, Any], upstream: Any) -> None:
    result = from_child(child_results, "llama/structured")
    assert result == {"predicted": FORECAST, "sllm": FORECAST}
    for name in ("llama-structured", "llama-sllm"):
        body = body_for(upstream, prompt_for(name))  # a forced call of a Forecast tool
        assert [t["function"]["name"] for t in body["tools"]] == ["Forecast"]
        assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False


def test_llamaindex_logprobs_and_image(child_results: dict[str, Any], upstream: Any) -> None:
    result = from_child(child_results, "llama/logprobs_image")
    body = body_for(upstream, prompt_for("llama-logprobs"))
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert result["content"] == expected_reply(body)
    expected = expected_logprobs(body)
    assert [[p["token"] for p in e] for e in result["logprobs"]] == [
        [t["token"] for t in e["top_logprobs"]] for e in expected
    ]
    image = next(
        r.body
        for r in reversed(upstream.requests)
        if isinstance(((r.body or {}).get("messages") or [{}])[-1].get("content"), list)
        and prompt_for("llama-image")
        in json.dumps(r.body["messages"][-1]["content"], ensure_ascii=False)
    )
    parts = image["messages"][-1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert result["image"] == expected_reply(image) and " [1 image]" in result["image"]


# --------------------------------------------------------------------------- LangChain


@pytest.fixture
def chat_openai(gateway_url: str) -> Callable[..., Any]:
    from langchain_openai import ChatOpenAI

    def make(model: str = "gpt-4o-mini", **options: Any) -> Any:
        return ChatOpenAI(
            base_url=f"{gateway_url}/v1", api_key="not-used", model=model, max_retries=0,
            **options,
        )  # fmt: skip

    return make


def langchain_calls(message: Any) -> list[tuple[str, dict[str, Any]]]:
    assert all(c["type"] == "tool_call" and c["id"].startswith("call_") for c in message.tool_calls)
    return [(c["name"], c["args"]) for c in message.tool_calls]


@pytest.mark.parametrize("stream", [False, True])
def test_langchain_parallel_tool_calls(
    chat_openai: Callable[..., Any], upstream: Any, stream: bool
) -> None:
    llm = chat_openai("gpt-4o-mini;calls=2").bind_tools([get_weather, get_time])
    text = prompt_for(f"langchain-tools-{stream}")
    if stream:
        message = None
        for chunk in llm.stream(text):
            message = chunk if message is None else message + chunk
    else:
        message = llm.invoke(text)
    body = body_for(upstream, text)  # (the worker always streams from the upstream)
    assert langchain_calls(message) == [
        (c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in expected_calls(body)
    ]
    assert [name for name, _ in langchain_calls(message)] == ["get_weather", "get_time"]
    assert message.response_metadata["finish_reason"] == "tool_calls"


def test_langchain_tool_result_round_trip(chat_openai: Callable[..., Any], upstream: Any) -> None:
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import tool

    weather = tool(get_weather)
    llm = chat_openai().bind_tools([weather])
    text = prompt_for("langchain-round-trip")
    messages: list[Any] = [HumanMessage(text)]
    first = llm.invoke(messages)
    messages.append(first)
    messages += [weather.invoke(call) for call in first.tool_calls]
    final = llm.invoke(messages)
    body = round_trip_body(upstream, text)
    assert body["messages"][-1] == {
        "role": "tool", "content": TOOL_RESULT, "tool_call_id": first.tool_calls[0]["id"],
    }  # fmt: skip
    assert final.content == expected_reply(body) and final.tool_calls == []
    assert f"The tool said: «{TOOL_RESULT}»" in final.content


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_with_structured_output(
    chat_openai: Callable[..., Any], upstream: Any, method: str
) -> None:
    text = prompt_for(f"langchain-structured-{method}")
    llm = chat_openai().with_structured_output(Forecast, method=method)
    result = llm.invoke(text)
    body = body_for(upstream, text)
    assert result == Forecast(**FORECAST)
    if method == "json_schema":
        assert body["response_format"]["json_schema"]["name"] == "Forecast"
    else:
        assert body["tool_choice"]["function"]["name"] == "Forecast"


def test_langchain_logprobs_and_image(chat_openai: Callable[..., Any], upstream: Any) -> None:
    from langchain_core.messages import HumanMessage

    text = prompt_for("langchain-logprobs")
    message = chat_openai(logprobs=True, top_logprobs=2).invoke(text)
    body = body_for(upstream, text)
    assert message.content == expected_reply(body)
    assert message.response_metadata["logprobs"]["content"] == expected_logprobs(body)
    content = image_content(prompt_for("langchain-image"))
    seen = chat_openai().invoke([HumanMessage(content=content)])
    image = body_for(upstream, content)
    assert seen.content == expected_reply(image) and " [1 image]" in seen.content


# --------------------------------------------------------------------------- litellm


@pytest.fixture
def litellm_completion(gateway_url: str) -> Callable[..., Any]:
    import litellm

    def completion(model: str = "gpt-4o-mini", **options: Any) -> Any:
        return litellm.completion(
            model=f"openai/{model}", api_base=f"{gateway_url}/v1", api_key="not-used",
            num_retries=0, **options,
        )  # fmt: skip

    return completion


# litellm's stream_chunk_builder builds pydantic schemas of TypedDicts with ReadOnly items
@pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")
@pytest.mark.parametrize("stream", [False, True])
def test_litellm_parallel_tool_calls(
    litellm_completion: Callable[..., Any], upstream: Any, stream: bool
) -> None:
    import litellm

    text = prompt_for(f"litellm-tools-{stream}")
    messages = [{"role": "user", "content": text}]
    result = litellm_completion(
        "gpt-4o-mini;calls=2", messages=messages, tools=[WEATHER, TIME], stream=stream
    )
    if stream:
        result = litellm.stream_chunk_builder(list(result), messages=messages)
    body = body_for(upstream, text)
    assert body["model"] == "gpt-4o-mini;calls=2"
    calls = result.choices[0].message.tool_calls
    assert plain(calls) == expected_calls(body)
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert result.choices[0].finish_reason == "tool_calls"


def test_litellm_tool_result_round_trip(
    litellm_completion: Callable[..., Any], upstream: Any
) -> None:
    text = prompt_for("litellm-round-trip")
    messages: list[Any] = [{"role": "user", "content": text}]
    first = litellm_completion(messages=messages, tools=[WEATHER])
    message = first.choices[0].message
    messages.append(message)
    for call in message.tool_calls:
        result = get_weather(**json.loads(call.function.arguments))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    final = litellm_completion(messages=messages, tools=[WEATHER])
    body = round_trip_body(upstream, text)
    assert body["messages"][-2]["tool_calls"][0]["id"] == message.tool_calls[0].id
    assert final.choices[0].message.content == expected_reply(body)
    assert f"The tool said: «{TOOL_RESULT}»" in final.choices[0].message.content


def test_litellm_structured_output_logprobs_and_image(
    litellm_completion: Callable[..., Any], upstream: Any
) -> None:
    text = prompt_for("litellm-structured")
    result = litellm_completion(
        messages=[{"role": "user", "content": text}], response_format=Forecast
    )
    assert body_for(upstream, text)["response_format"]["type"] == "json_schema"
    assert Forecast.model_validate_json(result.choices[0].message.content) == Forecast(**FORECAST)

    text = prompt_for("litellm-logprobs")
    result = litellm_completion(
        messages=[{"role": "user", "content": text}], logprobs=True, top_logprobs=2
    )
    body = body_for(upstream, text)
    logprobs = result.choices[0].logprobs
    content = logprobs["content"] if isinstance(logprobs, dict) else logprobs.content
    entries = [e if isinstance(e, dict) else e.model_dump() for e in content]
    assert entries == expected_logprobs(body)

    content = image_content(prompt_for("litellm-image"))
    result = litellm_completion(messages=[{"role": "user", "content": content}])
    image = body_for(upstream, content)
    assert result.choices[0].message.content == expected_reply(image)
    assert " [1 image]" in result.choices[0].message.content
