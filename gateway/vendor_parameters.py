"""Which top-level request fields Sluice does not know but forwards: vendor parameters.

OpenAI-compatible servers take parameters of their own at the top level of the request,
which the OpenAI SDKs send through ``extra_body`` (vLLM and SGLang's ``top_k``, ``min_p``,
``repetition_penalty``, ``chat_template_kwargs``; OpenRouter's ``provider``; llama.cpp's
``grammar``…). The rule, so that nothing is dropped silently:

1. a field of OpenAI's request is validated (``gateway.request``) and forwarded;
2. a field named here (``KNOWN``), or in ``SLUICE_VENDOR_PARAMETERS``, is forwarded
   unchanged, unvalidated: the upstream that takes it checks it, and its refusal reaches
   the client as the job's error (``/v1/chat/completions`` answers with its status);
3. with ``SLUICE_VENDOR_PARAMETERS=*`` every other field is forwarded too;
4. any other field is a ``400`` that names it, and names the OpenAI parameter it looks
   like when it looks like a misspelling (``temprature`` → ``temperature``).

OpenAI parameters Sluice cannot carry through its log are refused by name (``REFUSED``),
with what to use instead, rather than forwarded: their output would be lost.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from typing import Any

from sluice.errors import InvalidRequest

# what each server documents for its OpenAI-compatible chat endpoint (extra sampling and
# decoding controls, routing, templates); a name here is forwarded as sent
KNOWN = frozenset(
    {
        # vLLM
        "top_k", "min_p", "repetition_penalty", "length_penalty", "min_tokens",
        "stop_token_ids", "include_stop_str_in_output", "ignore_eos", "skip_special_tokens",
        "spaces_between_special_tokens", "truncate_prompt_tokens", "prompt_logprobs",
        "allowed_token_ids", "bad_words", "echo", "add_generation_prompt",
        "continue_final_message", "add_special_tokens", "documents", "chat_template",
        "chat_template_kwargs", "mm_processor_kwargs", "guided_json", "guided_regex",
        "guided_choice", "guided_grammar", "guided_decoding_backend",
        "guided_whitespace_pattern", "structured_outputs", "priority", "request_id",
        "return_tokens_as_token_ids", "cache_salt", "use_beam_search", "vllm_xargs",
        # SGLang
        "regex", "ebnf", "separate_reasoning", "stream_reasoning", "lora_path",
        "no_stop_trim", "rid",
        # llama.cpp server
        "typical_p", "mirostat", "mirostat_tau", "mirostat_eta", "repeat_penalty",
        "repeat_last_n", "grammar", "json_schema", "n_probs", "cache_prompt", "samplers",
        "dry_multiplier", "xtc_probability", "id_slot", "timings_per_token",
        "reasoning_format",
        # OpenRouter
        "provider", "models", "route", "transforms", "reasoning", "usage", "plugins",
        "top_a",
        # Groq, Mistral, Qwen (DashScope), DeepSeek, Ollama, Together
        "include_reasoning", "search_settings", "safe_prompt", "random_seed", "prompt_mode",
        "enable_thinking", "thinking_budget", "enable_search", "thinking", "keep_alive",
        "options", "safety_model",
    }
)  # fmt: skip

REFUSED = {
    "functions": "the functions API is deprecated: send tools (type function)",
    "function_call": "the functions API is deprecated: send tool_choice",
    "audio": "audio output is not supported: its deltas cannot be carried in the job's log",
    "web_search_options": "web search is not supported: its citations cannot be carried "
    "in the job's log",
}


def split_vendor_parameters(
    body: dict[str, Any], openai_fields: Collection[str], allowed: Collection[str]
) -> dict[str, Any]:
    """Remove and return the vendor parameters of ``body`` (rule above); a field that is
    neither OpenAI's nor allowed is a 400 that names it."""
    vendor: dict[str, Any] = {}
    for name in [k for k in body if k not in openai_fields]:
        if name in REFUSED:
            raise InvalidRequest(f"{name}: {REFUSED[name]}", param=name)
        if name in KNOWN or name in allowed or "*" in allowed:
            vendor[name] = body.pop(name)
            continue
        guess = difflib.get_close_matches(name, openai_fields, n=1, cutoff=0.8)
        hint = f"; did you mean {guess[0]}?" if guess else ""
        raise InvalidRequest(
            f"{name}: unknown parameter{hint} (a vendor parameter of your upstream is "
            "forwarded when SLUICE_VENDOR_PARAMETERS names it)",
            param=name,
        )
    return vendor
