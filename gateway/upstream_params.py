"""Mapping a request's parameters to what the model's family accepts upstream.

OpenAI's reasoning models (o1, o3, o4-mini, gpt-5…) reject ``max_tokens`` (they take
``max_completion_tokens``) and any non-default ``temperature``, ``top_p``, penalties or
``logit_bias``. Users should not need to know: Sluice sends one request shape per family.

| parameter | reasoning models | other models |
| --- | --- | --- |
| ``max_tokens`` (or ``max_completion_tokens``) | as ``max_completion_tokens`` | as ``max_tokens`` |
| ``temperature``, ``top_p`` | dropped | sent |
| ``presence_penalty``, ``frequency_penalty`` | dropped | sent |
| ``logit_bias`` | dropped | sent |
| ``n``, ``stop``, ``user``, ``seed`` | sent | sent |
"""

from __future__ import annotations

from typing import Any

from sluice.models import ModelInfo

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
