"""A fake OpenAI-compatible upstream that reproduces real provider streams and their faults.

Used as the upstream LLM by the integration tests, and as a clearly-labelled local *demo
upstream* when Sluice runs without an OPENAI_API_KEY (``python -m devtools.fake_upstream``).
Standard library only, so it starts in milliseconds and cannot drift with a web framework.

Endpoints: ``POST /v1/chat/completions`` (streaming and not), ``GET /v1/models``; anything
else is a 404 in OpenAI's error shape. With an ``api_key`` every endpoint but the 404 needs
``Authorization: Bearer <api_key>`` (or one of ``extra_keys``), answered otherwise with
OpenAI's 401 bodies, which quote the key sent masked as OpenAI does or, with
``key_echo="full"``, whole as some OpenAI-compatible servers do.

The reply is deterministic (see :func:`expected_reply`, :func:`expected_tool_calls`,
:func:`expected_refusal`, :func:`expected_logprobs`) and deliberately contains
multi-byte UTF-8 (« » é 🙂 中文), a newline and a U+2028 so relays that split bytes or lines
naively break visibly. Streams go out with chunked transfer encoding, like the real API. The
request's ``model`` picks a scenario: the catalogue is the docstring of ``scenarios``.

One concern a module, each importing only the ones before it: ``replies`` (what is said),
``wire`` (how it is framed, byte for byte), ``scenarios`` (what a model name makes happen),
``server`` (HTTP, one request's socket, ``FakeUpstream``, the CLI). Import from here;
underscored names are shared between the modules, not offered to callers.
"""

from devtools.fake_upstream.replies import (
    ARGUMENT_PIECE,
    BUILTIN_TOOL,
    REFUSAL_TEXT,
    expected_logprobs,
    expected_reasoning,
    expected_refusal,
    expected_reply,
    expected_tool_calls,
    prompt_tokens,
    schema_value,
    split_json,
    split_pieces,
)
from devtools.fake_upstream.scenarios import (
    DEFAULT_SCENARIO,
    REFUSALS,
    SCENARIOS,
    Disruptions,
    parse_model,
)
from devtools.fake_upstream.server import (
    DEFAULT_PORT,
    DEMO_DELAY,
    DEMO_MODEL,
    DEMO_OWNER,
    FakeUpstream,
    RecordedRequest,
    main,
)
from devtools.fake_upstream.wire import FINGERPRINT, OPENAI_STYLE

__all__ = [
    "ARGUMENT_PIECE",
    "BUILTIN_TOOL",
    "DEFAULT_PORT",
    "DEFAULT_SCENARIO",
    "DEMO_DELAY",
    "DEMO_MODEL",
    "DEMO_OWNER",
    "FINGERPRINT",
    "OPENAI_STYLE",
    "REFUSALS",
    "REFUSAL_TEXT",
    "SCENARIOS",
    "Disruptions",
    "FakeUpstream",
    "RecordedRequest",
    "expected_logprobs",
    "expected_reasoning",
    "expected_refusal",
    "expected_reply",
    "expected_tool_calls",
    "main",
    "parse_model",
    "prompt_tokens",
    "schema_value",
    "split_json",
    "split_pieces",
]
