"""What Sluice knows about models: context window and tiktoken encoding.

Dated snapshots (``gpt-4o-2024-08-06``) match their family by the longest known prefix.
Models Sluice does not know are allowed (OpenAI-compatible servers serve any name): they
get ``SLUICE_DEFAULT_CONTEXT_WINDOW`` and are counted with ``o200k_base``, an estimate.

What each family accepts upstream (``upstream_parameters``): OpenAI's reasoning models (o1,
o3, o4-mini, gpt-5…) reject ``max_tokens`` (they take ``max_completion_tokens``) and any
non-default ``temperature``, ``top_p``, penalties or ``logit_bias``. Users should not need
to know: Sluice sends one request shape per family.

| parameter | reasoning models | other models |
| --- | --- | --- |
| ``max_tokens`` (or ``max_completion_tokens``) | as ``max_completion_tokens`` | as ``max_tokens`` |
| ``temperature``, ``top_p`` | dropped | sent |
| ``presence_penalty``, ``frequency_penalty`` | dropped | sent |
| ``logit_bias`` | dropped | sent |
| ``n``, ``stop``, ``user``, ``seed`` | sent | sent |
| ``reasoning_effort``, ``verbosity``, ``service_tier``, ``metadata``, ``store`` | sent | sent |
| ``tools``, ``tool_choice``, ``parallel_tool_calls``, ``response_format`` | sent | sent |
| ``logprobs``, ``top_logprobs``, ``prediction``, vendor parameters | sent | sent |
| a ``developer`` message | sent | as ``system`` |

Other models get ``reasoning_effort`` and the rest as sent: one that refuses a parameter
says so to the client, nothing is dropped silently. ``developer`` goes to them as
``system``, which older models and most OpenAI-compatible servers know.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

O200K = "o200k_base"
CL100K = "cl100k_base"


@dataclass(frozen=True)
class ModelInfo:
    id: str
    context_window: int
    encoding: str
    known: bool = True
    # OpenAI reasoning models (o-series, gpt-5): they take max_completion_tokens and
    # refuse non-default sampling parameters (``upstream_parameters``)
    reasoning: bool = False


# family prefix -> (context window, encoding); sources: OpenAI's model pages.
KNOWN_MODELS: dict[str, tuple[int, str]] = {
    "gpt-5": (400_000, O200K),
    "gpt-4.1": (1_047_576, O200K),
    "gpt-4o": (128_000, O200K),
    "chatgpt-4o": (128_000, O200K),
    "gpt-4.5": (128_000, O200K),
    "o1-mini": (128_000, O200K),
    "o1-preview": (128_000, O200K),
    "o1": (200_000, O200K),
    "o3": (200_000, O200K),
    "o4-mini": (200_000, O200K),
    "gpt-oss": (131_072, O200K),
    "gpt-4-turbo": (128_000, CL100K),
    "gpt-4-1106": (128_000, CL100K),
    "gpt-4-0125": (128_000, CL100K),
    "gpt-4-32k": (32_768, CL100K),
    "gpt-4": (8_192, CL100K),
    "gpt-3.5-turbo-instruct": (4_096, CL100K),
    "gpt-3.5-turbo": (16_385, CL100K),
}
REASONING_FAMILIES = ("o1", "o3", "o4", "gpt-5")
NOT_REASONING = ("gpt-5-chat",)


def is_reasoning(model: str) -> bool:
    if model.startswith(NOT_REASONING):
        return False
    return any(model == f or model.startswith((f + "-", f + ".")) for f in REASONING_FAMILIES)


def family_of(model: str, families: Iterable[str] = KNOWN_MODELS) -> str | None:
    """The longest of ``families`` that ``model`` is, or is a dated or suffixed snapshot
    of (``gpt-4o-2024-08-06`` and ``gpt-4o.1`` are ``gpt-4o``); None when none is."""
    matching = [f for f in families if model == f or model.startswith((f + "-", f + "."))]
    return max(matching, key=len, default=None)


def lookup(model: str, default_context_window: int) -> ModelInfo:
    family = family_of(model)
    if family is None:
        return ModelInfo(model, default_context_window, O200K, known=False)
    window, encoding = KNOWN_MODELS[family]
    return ModelInfo(model, window, encoding, reasoning=is_reasoning(model))


DROPPED_FOR_REASONING = ("temperature", "top_p", "presence_penalty", "frequency_penalty",
                         "logit_bias")  # fmt: skip


def upstream_parameters(model: ModelInfo, params: dict[str, Any]) -> dict[str, Any]:
    """The optional parameters to send for ``model``; ``params`` uses ``max_tokens``."""
    out = dict(params)
    max_tokens = out.pop("max_tokens", None)
    out.pop("max_completion_tokens", None)
    if model.reasoning:
        for name in DROPPED_FOR_REASONING:
            out.pop(name, None)
        if max_tokens:
            out["max_completion_tokens"] = max_tokens
    elif max_tokens:
        out["max_tokens"] = max_tokens
    return out


def upstream_messages(model: ModelInfo, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages to send for ``model``: a ``developer`` message (OpenAI's newer name
    for instructions, which reasoning models take) goes to other models as ``system``."""
    if model.reasoning:
        return messages
    return [{**m, "role": "system"} if m.get("role") == "developer" else m for m in messages]
