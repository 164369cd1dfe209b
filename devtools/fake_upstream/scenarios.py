"""The provider scenarios: what each ``model`` name makes the fake upstream do.

The request's ``model`` picks a scenario, with parameters after semicolons
(``"slow;words=40;delay=0.05"``); unknown names (``gpt-4o-mini``, ``sluice-demo``) mean
``openai``. Parameters: ``words`` (int, 12), ``delay`` (seconds between pieces, server
default), ``fail_after`` (pieces before a fault, 3), ``retry_after`` (seconds, 1), ``stall``
(seconds, 600), ``failures`` (int, 1), ``gap`` (seconds between fragments, 0.001),
``framing`` (``chunked``, as OpenAI; ``close``: a stream's body has neither chunked encoding
nor a length and ends when the server closes the connection, as Python's ``http.server``,
some proxies and small servers answer), ``encoding`` (``identity``; ``gzip``: the stream
compressed, flushed after every write), ``calls`` (tool calls per answer, 1).

What every answering scenario says (``replies`` decides it from the body; the scenario only
dresses it, so delays, usage placement, faults and line styles apply alike):

Text
    :func:`expected_reply`: a greeting quoting the last message's text parts, then
    ``words`` of lorem with multi-byte UTF-8, a newline and a U+2028. Image, audio and file
    parts are not text: the quote is followed by `` [1 image]`` (``2 images``, ``1 audio
    clip``, ``1 file``…), so a test can prove such a part reached the upstream.
Tool calls
    When ``tools`` has a function or custom tool, ``tool_choice`` is not ``"none"`` and the
    last message is not a ``tool`` message. Which: ``tool_choice: {"type": "function",
    "function": {"name": X}}`` (or ``custom``) calls X once; otherwise (``"auto"``,
    ``"required"``, absent) the first ``calls`` tools in order, cycling through the list when
    ``calls`` exceeds it, only one when ``parallel_tool_calls`` is false. A function's
    arguments are :func:`replies.schema_value` of its ``parameters`` (every property: enum's
    first value; "Paris" for city/location/place/town/destination; ``"<name>-value"`` for
    other strings; integer 1, number 1.5, boolean true, array [] (``minItems`` items),
    objects recursively), compact JSON (``{"city":"Paris"}``, ``{}`` without parameters); a
    custom tool's input is "Input for <name> from the Sluice demo upstream.". Streamed as
    OpenAI does: the first call's id/type/name (``"call_"`` + 24 letters and digits, empty
    arguments) on the role chunk (``content: null, refusal: null``; with ``reasoning``, in a
    chunk of its own after the reasoning), then the arguments in
    ``replies.ARGUMENT_PIECE`` (4) character fragments (``{"index": k, "function":
    {"arguments": piece}}``, ``"custom": {"input": piece}``), each further call's header
    (``index`` k, own id) then its fragments; ``finish_reason: "tool_calls"`` (``length``
    when max_tokens, counting fragments, cut them). One fragment is one completion token.
    Non-streamed: ``message.tool_calls`` with ``content: null``. :func:`expected_tool_calls`
    gives the calls (ids aside).
Tool results
    When the conversation ends with ``tool`` messages, text: the greeting says ``The tool
    said: «<content>».`` for each of them instead of quoting the user.
Structured output
    ``response_format`` ``json_schema``: the content is ``schema_value`` of the schema (all
    properties, no others), ``json_object``: ``{"answer": <the text reply>}``; both compact
    JSON streamed in 4-character pieces; :func:`expected_reply` returns it.
Logprobs
    ``logprobs: true``: each content (refusal) chunk's ``logprobs`` is ``{"content":
    [entry], "refusal": null}`` (``{"content": null, "refusal": [entry]}``), an entry being
    ``{"token", "logprob", "bytes", "top_logprobs"}`` with ``top_logprobs`` alternatives
    (the token itself first, each next 1.0 less likely); non-streamed, the same entries in
    ``choice.logprobs``; tool call chunks have none. :func:`expected_logprobs` gives them.
    ``top_logprobs`` outside 0..20 is OpenAI's 400 naming ``param: "top_logprobs"``.

Scenarios and the real behaviour each reproduces:

``openai``
    OpenAI: role chunk, one chunk per token, finish chunk (``stop``, or ``length`` when
    ``max_tokens`` cut it), a ``choices: []`` usage chunk only with
    ``stream_options.include_usage`` (then every chunk carries ``"usage": null``), ``[DONE]``.
``azure``
    Azure OpenAI: a first chunk with empty id/model and ``prompt_filter_results``, then
    ``content_filter_results`` on every choice.
``no-usage``
    vLLM without include_usage, TGI, old Ollama: never a usage chunk.
``rejects-stream-options``
    Older OpenAI-compatible servers and API versions: 400 "Unrecognized request argument
    supplied: stream_options" when the body has it; otherwise like ``no-usage``.
``llamacpp``
    llama.cpp server: usage and a ``timings`` object ride on the finish chunk.
``ollama-old``
    Old Ollama: ``"finish_reason": ""`` instead of null on intermediate chunks.
``crlf`` / ``cr``
    Servers (often behind Windows/.NET stacks) ending SSE lines with CRLF, or bare CR; both
    legal per the SSE spec.
``fragmented``
    Proxies and slow links: the ``openai`` bytes in 1-3 byte HTTP chunks with a short sleep
    between, so events, CRLF pairs and UTF-8 characters straddle network reads.
``comments``
    Proxies and other SSE servers: ``: keep-alive`` comments, ``event: message``, ``id: N``
    and ``retry: 3000`` lines among the data events.
``no-done``
    Providers that finish without ``data: [DONE]`` (the body simply ends).
``truncated``
    A dropped connection: after ``fail_after`` pieces the socket is shut down without the
    terminating HTTP chunk, ``finish_reason`` or ``[DONE]``.
``error-in-stream``
    OpenAI failing mid-generation: ``data: {"error": {...server_error...}}`` then ``[DONE]``.
``error-event``
    Anthropic-style overload: ``event: error`` with an ``overloaded_error`` body, then the end.
``stall``
    A hung generation: role chunk and ``fail_after`` pieces, then silence on an open
    connection until the client leaves (counted) or ``stall`` seconds pass (then cut).
``silent``
    A hung request: no bytes at all, not even headers, until the client leaves or ``stall``
    seconds pass (then the connection is closed).
``http-400`` ``http-401`` ``http-403`` ``http-404`` ``http-429`` ``http-500`` ``http-503``
    OpenAI's error responses for those statuses (context length, invalid key, unsupported
    region, unknown model, rate limit with Retry-After and x-ratelimit-* headers, server
    error, engine overloaded).
``redirect``
    A ``307 Temporary Redirect`` to ``to`` (default a closed port on 127.0.0.1).
``http-429-then-ok`` ``http-500-then-ok`` ``http-503-then-ok``
    Transient failures: the first ``failures`` requests with that exact model string get the
    error, later ones stream normally (counted per server instance).
``reasoning``
    DeepSeek-R1 style: ``reasoning_content`` chunks (``content: null``) before the answer;
    the reasoning text is :func:`expected_reasoning`.
``slow``
    ``openai`` with ``delay`` defaulting to 0.05 s.
``tools``
    ``openai`` that answers with tool calls even when the request defines no tools (then
    ``calls`` calls to a built-in ``get_weather(city)``, ``replies.BUILTIN_TOOL``), so a chat
    page without tool definitions can be shown tool calls; ``tool_choice: "none"`` and tool
    results still get text.
``refusal``
    A safety refusal: ``delta: {"role": "assistant", "content": null, "refusal": ""}``, then
    ``refusal`` pieces of :data:`REFUSAL_TEXT` ("I'm sorry, I can't help with that
    request."), ``finish_reason: "stop"``; non-streamed ``message.refusal`` with ``content:
    null``. Refuses even when tools are offered. :func:`expected_refusal`.
``echo``
    The reply text is ``json.dumps`` of the request body without ``messages``, keys sorted
    (default separators), streamed in text pieces, the same for every choice; tools and
    ``response_format`` are ignored. So clients in another process (Node tests) can see
    exactly which top-level fields reached the upstream (``FakeUpstream.requests`` records
    them in-process).

Non-streaming requests to the mid-stream fault scenarios get the nearest equivalent:
``truncated`` sends half a body then closes, ``error-in-stream`` is an HTTP 500,
``error-event`` an HTTP 529, ``stall`` behaves like ``silent``.

Each scenario is one small function choosing among ``wire``'s options (a ``_Style``, line
ends, a fault, an error body), so a newly met provider quirk is one function and one row of
``SCENARIOS``. ``Disruptions`` is here too: it is the same provider trouble applied to every
request for a while (the chaos soak schedules it) and checks its refusals against
``REFUSALS``; the server only holds one and consults it. ``parse_model`` is here because it
resolves a name against this table. The request type, ``server._Call``, is imported for type
checking only, so this module depends on ``wire`` and ``replies`` alone at import time.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from devtools.fake_upstream.replies import _split_model
from devtools.fake_upstream.wire import (
    _ClientGone,
    _compact,
    _error_body,
    _respond,
    _SSEWriter,
    _Style,
    _unauthorized,
)

if TYPE_CHECKING:
    from devtools.fake_upstream.server import _Call

DEFAULT_SCENARIO = "openai"


def parse_model(model: str) -> tuple[str, dict[str, str]]:
    """Split ``"name;k=v;..."`` so a test can pick a scenario through the model field alone;
    a name that is no scenario (``gpt-4o-mini``, ``sluice-demo``) means DEFAULT_SCENARIO."""
    name, params = _split_model(model)
    return (name if name in SCENARIOS else DEFAULT_SCENARIO), params


# --------------------------------------------------------------------------- faults


def _fault_truncate(call: _Call, sse: _SSEWriter | None) -> None:
    """Connection dropped mid-body: no terminating chunk, no finish_reason, no [DONE]."""
    if sse is None:
        data = _compact({"id": call.id, "object": "chat.completion", "choices": []}).encode()
        call.handler.send_head(200, "application/json", {"Content-Length": str(len(data) * 2)})
        call.write(data)
    call.abort()


def _fault_error_in_stream(call: _Call, sse: _SSEWriter | None) -> None:
    """OpenAI's mid-stream server_error event, followed by [DONE] as OpenAI does."""
    message = "The server had an error while processing your request."
    if sse is None:
        call.error(500, _error_body(message, "server_error", None, "internal_error"))
        return
    sse.send(json.dumps(_error_body(message, "server_error", None, "internal_error")))
    sse.send("[DONE]")
    sse.end()


def _fault_error_event(call: _Call, sse: _SSEWriter | None) -> None:
    """An ``event: error`` overload notice, then the body ends without [DONE]."""
    body = {"error": {"message": "Overloaded", "type": "overloaded_error", "code": 529}}
    if sse is None:
        call.error(529, body)
        return
    sse.send(json.dumps(body), event="error")
    sse.end()


def _fault_stall(call: _Call, sse: _SSEWriter | None) -> None:
    """Go quiet on an open connection until the client leaves or `stall` seconds pass."""
    if sse is None:
        _silent(call)
        return
    if call.client_closed_within(call.stall):
        raise _ClientGone
    call.abort()


# --------------------------------------------------------------------------- scenarios


def _openai(call: _Call) -> None:
    """OpenAI's own stream: the reference every other scenario deviates from."""
    _respond(call)


def _azure(call: _Call) -> None:
    """Azure OpenAI: a filter-results prelude chunk with empty id/model, filters per choice."""
    _respond(call, _Style(content_filter=True))


def _no_usage(call: _Call) -> None:
    """vLLM without include_usage, TGI, old Ollama: token counts never arrive."""
    _respond(call, _Style(usage="none"))


def _rejects_stream_options(call: _Call) -> None:
    """Servers and API versions that reject stream_options with a 400."""
    if "stream_options" in call.body:
        message = "Unrecognized request argument supplied: stream_options"
        call.error(400, _error_body(message, "invalid_request_error"))
        return
    _no_usage(call)


def _llamacpp(call: _Call) -> None:
    """llama.cpp server: usage and timings ride on the finish chunk, no usage chunk."""
    _respond(call, _Style(usage="finish"))


def _ollama_old(call: _Call) -> None:
    """Old Ollama: finish_reason is "" (not null) until the last chunk."""
    _respond(call, _Style(blank_finish_reason=True))


def _crlf(call: _Call) -> None:
    """CRLF line ends (legal SSE; common behind .NET/IIS and some proxies)."""
    _respond(call, eol="\r\n")


def _cr(call: _Call) -> None:
    """Bare CR line ends: legal SSE that line-splitting on \n alone never sees."""
    _respond(call, eol="\r")


def _fragmented(call: _Call) -> None:
    """Slow links and proxies: tiny network reads split events and UTF-8 characters."""
    _respond(call, fragment=True, gap=call.gap)


def _comments(call: _Call) -> None:
    """Keep-alive comments, event/id/retry fields: all must be ignored, not parsed as data."""
    _respond(call, comments=True)


def _no_done(call: _Call) -> None:
    """Providers that end the body after the finish chunk without [DONE]."""
    _respond(call, done=False)


def _truncated(call: _Call) -> None:
    """A dropped connection mid-stream: incomplete chunked body."""
    _respond(call, fault=_fault_truncate)


def _error_in_stream(call: _Call) -> None:
    """OpenAI failing mid-generation after a 200 has already been sent."""
    _respond(call, fault=_fault_error_in_stream)


def _error_event(call: _Call) -> None:
    """Anthropic-style `event: error` overload notice mid-stream."""
    _respond(call, fault=_fault_error_event)


def _stall(call: _Call) -> None:
    """A hung generation: the connection stays open but nothing more comes."""
    _respond(call, fault=_fault_stall)


def _silent(call: _Call) -> None:
    """No status line, no headers: only a read timeout can get the client out."""
    with call.track_stream(counted=call.stream):
        if call.client_closed_within(call.stall):
            raise _ClientGone
        call.abort()


def _reasoning(call: _Call) -> None:
    """DeepSeek-R1 style reasoning_content chunks before the answer."""
    _respond(call, _Style(reasoning=True))


def _echo(call: _Call) -> None:
    """The request's top-level fields as the reply text (``replies`` reads the name), so a
    client in another process can see exactly what reached the upstream."""
    _respond(call)


def _refusal(call: _Call) -> None:
    """A safety refusal: ``refusal`` deltas instead of content (``replies`` reads the name)."""
    _respond(call)


def _tools(call: _Call) -> None:
    """Tool calls even for a request without tools (``replies`` reads the name and calls its
    built-in get_weather), so a chat page can be shown tool calls."""
    _respond(call)


def _redirect(call: _Call) -> None:
    """A 307 to ``to`` (a proxy or load balancer in front of a provider can answer so): a
    client that follows it sends the request, body and all, somewhere else."""
    target = call.params.get("to", "http://127.0.0.1:9/v1/chat/completions")
    call.handler.send_body(307, b"", "text/plain", {"Location": target})


def _http_400(call: _Call) -> None:
    """OpenAI's context_length_exceeded 400."""
    message = (
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 131072 tokens. Please reduce the length of the messages."
    )
    call.error(
        400, _error_body(message, "invalid_request_error", "messages", "context_length_exceeded")
    )


def _http_401(call: _Call) -> None:
    """OpenAI's 401 for an invalid (or missing) key, whatever key was sent."""
    _unauthorized(call.handler)


def _http_403(call: _Call) -> None:
    """OpenAI's 403 for an unsupported country, region or territory."""
    body = _error_body(
        "Country, region, or territory not supported",
        "request_forbidden",
        None,
        "unsupported_country_region_territory",
    )
    call.error(403, body)


def _http_404(call: _Call) -> None:
    """OpenAI's 404 model_not_found for the requested model."""
    message = f"The model `{call.model}` does not exist or you do not have access to it."
    call.error(404, _error_body(message, "invalid_request_error", None, "model_not_found"))


def _http_429(call: _Call) -> None:
    """OpenAI's 429 with Retry-After, retry-after-ms and x-ratelimit-* headers."""
    wait = call.retry_after
    message = (
        f"Rate limit reached for {call.model} in organization org-fake on requests per min "
        f"(RPM): Limit 3, Used 3, Requested 1. Please try again in {wait:g}s. Visit "
        "https://platform.openai.com/account/rate-limits to learn more."
    )
    headers = {
        "Retry-After": str(math.ceil(wait)),
        "retry-after-ms": str(round(wait * 1000)),
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{wait:g}s",
        "x-ratelimit-limit-tokens": "40000",
        "x-ratelimit-remaining-tokens": "39950",
        "x-ratelimit-reset-tokens": "75ms",
    }
    call.error(429, _error_body(message, "requests", None, "rate_limit_exceeded"), headers)


def _http_500(call: _Call) -> None:
    """OpenAI's generic 500 server_error."""
    message = "The server had an error while processing your request. Sorry about that!"
    call.error(500, _error_body(message, "server_error"))


def _http_503(call: _Call) -> None:
    """OpenAI's 503 when the engine is overloaded."""
    message = "The engine is currently overloaded, please try again later."
    call.error(503, _error_body(message, "server_error"))


def _then_ok(fail: Callable[[_Call], None]) -> Callable[[_Call], None]:
    """First `failures` requests with this exact model string fail, later ones stream."""

    def scenario(call: _Call) -> None:
        if call.upstream._take_failure(call.model, call.failures):
            fail(call)
        else:
            _openai(call)

    scenario.__doc__ = f"{fail.__name__} until `failures` requests have failed, then openai."
    return scenario


SCENARIOS: dict[str, Callable[[_Call], None]] = {
    "openai": _openai,
    "azure": _azure,
    "no-usage": _no_usage,
    "rejects-stream-options": _rejects_stream_options,
    "llamacpp": _llamacpp,
    "ollama-old": _ollama_old,
    "crlf": _crlf,
    "cr": _cr,
    "fragmented": _fragmented,
    "comments": _comments,
    "no-done": _no_done,
    "truncated": _truncated,
    "error-in-stream": _error_in_stream,
    "error-event": _error_event,
    "stall": _stall,
    "silent": _silent,
    "redirect": _redirect,
    "http-400": _http_400,
    "http-401": _http_401,
    "http-403": _http_403,
    "http-404": _http_404,
    "http-429": _http_429,
    "http-500": _http_500,
    "http-503": _http_503,
    "http-429-then-ok": _then_ok(_http_429),
    "http-500-then-ok": _then_ok(_http_500),
    "http-503-then-ok": _then_ok(_http_503),
    "reasoning": _reasoning,
    "slow": _openai,  # _Call gives "slow" its 0.05 s default delay
    "echo": _echo,
    "refusal": _refusal,
    "tools": _tools,
}
"""Scenario name -> handler; the request's model field picks one (see parse_model)."""
REFUSALS = {name: SCENARIOS[name] for name in ("http-429", "http-500", "http-503")}
"""The errors a disrupted upstream answers every request with (``Disruptions.refuse``)."""


# --------------------------------------------------------------------------- disruptions


class Disruptions:
    """Provider trouble for a while, across every request (the chaos soak schedules it):
    streams that go quiet, requests refused with 429 or 500, streams that end without
    ``[DONE]``. ``FakeUpstream.cut_streams`` drops the streams in progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._quiet_until = 0.0
        self._refuse_until = 0.0
        self._refusal = "http-429"
        self._no_done_until = 0.0

    def stall(self, seconds: float) -> None:
        """Every stream holds its next piece for ``seconds`` (new ones too)."""
        with self._lock:
            self._quiet_until = max(self._quiet_until, time.monotonic() + seconds)

    def refuse(self, scenario: str, seconds: float) -> None:
        """New requests get ``scenario``'s error (``http-429``, ``http-500``…)."""
        if scenario not in REFUSALS:
            raise ValueError(f"not a refusal: {scenario}")
        with self._lock:
            self._refusal = scenario
            self._refuse_until = time.monotonic() + seconds

    def omit_done(self, seconds: float) -> None:
        """Streams that finish meanwhile end their body without ``data: [DONE]``."""
        with self._lock:
            self._no_done_until = time.monotonic() + seconds

    def hold(self, stopping: threading.Event) -> None:
        while (left := self._quiet_until - time.monotonic()) > 0:
            if stopping.wait(min(left, 0.05)):
                return

    def refusing(self) -> str | None:
        with self._lock:
            return self._refusal if time.monotonic() < self._refuse_until else None

    def omitting_done(self) -> bool:
        return time.monotonic() < self._no_done_until
