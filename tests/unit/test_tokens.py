"""Token counting is exact and offline; trimming keeps what must be kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tiktoken

from sluice.errors import ContextLengthExceeded
from sluice.models import ModelInfo, lookup
from sluice.tokens import cache_file_name, count_messages, count_text, fit_to_context
from tests.helpers.support import ROOT


def test_cache_files_are_named_as_tiktoken_expects() -> None:
    assert cache_file_name("cl100k_base") == "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
    assert cache_file_name("o200k_base") == "fb374d419588a4632f3f557e76b4b70aebbca790"


def test_encodings_load_offline_from_an_empty_cache(tmp_path: Path) -> None:
    # A fresh cache dir and an unroutable proxy: any download attempt would fail.
    code = (
        "from sluice.tokens import count_text;"
        "print(count_text('tiktoken is great!', 'cl100k_base'),"
        " count_text('hello world', 'o200k_base'))"
    )
    env = {
        **os.environ,
        "TIKTOKEN_CACHE_DIR": str(tmp_path / "cache"),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["6", "2"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        [cache_file_name("cl100k_base"), cache_file_name("o200k_base")]
    )


# token ids as printed in the OpenAI cookbook "How to count tokens with tiktoken"
@pytest.mark.parametrize(
    ("text", "encoding", "expected"),
    [
        ("tiktoken is great!", "cl100k_base", [83, 1609, 5963, 374, 2294, 0]),
        ("hello world", "o200k_base", [24912, 2375]),
    ],
)
def test_counts_match_tiktoken_token_ids(text: str, encoding: str, expected: list[int]) -> None:
    from sluice.tokens import get_encoding

    assert get_encoding(encoding).encode(text) == expected
    assert count_text(text, encoding) == len(expected)


def test_chat_accounting_follows_openai_cookbook() -> None:
    # The cookbook's example: 3 per message + role + content, 1 for name, 3 priming.
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
    ]
    assert count_messages(messages, "cl100k_base") == 3 + (1 + 6) + 3 + (1 + 2) + 3
    named = [{"role": "user", "content": "Hello!", "name": "bob"}]
    enc = tiktoken.get_encoding("cl100k_base")
    assert count_messages(named, "cl100k_base") == 3 + 1 + 2 + len(enc.encode("bob")) + 1 + 3


def test_special_token_text_is_counted_as_plain_text() -> None:
    assert count_text("<|endoftext|>", "cl100k_base") > 1


def test_model_registry_knows_current_models_and_snapshots() -> None:
    assert lookup("gpt-4o-mini", 8192).context_window == 128_000
    assert lookup("gpt-4o-2024-08-06", 8192).encoding == "o200k_base"
    assert lookup("gpt-4.1-nano", 8192).context_window == 1_047_576
    assert lookup("gpt-4", 8192).encoding == "cl100k_base"
    assert lookup("gpt-4-turbo-2024-04-09", 8192).context_window == 128_000
    assert lookup("gpt-3.5-turbo", 8192).context_window == 16_385
    unknown = lookup("llama3.1:8b", 4096)
    assert (unknown.known, unknown.context_window) == (False, 4096)


def _msg(role: str, words: int, tag: str = "") -> dict[str, str]:
    return {"role": role, "content": (tag + " " + "word " * words).strip()}


def test_fitting_conversation_is_left_alone() -> None:
    model = ModelInfo("m", 1000, "cl100k_base")
    messages = [_msg("system", 5), _msg("user", 5), _msg("assistant", 5), _msg("user", 5)]
    fitted = fit_to_context(messages, model, max_tokens=100, reply_reserve=256)
    assert fitted.dropped == 0
    assert fitted.messages == messages
    assert fitted.prompt_tokens == count_messages(messages, "cl100k_base")


@pytest.mark.parametrize("instructions", ["system", "developer"])
def test_oldest_non_system_messages_are_dropped_first(instructions: str) -> None:
    """System and developer messages (OpenAI's newer name for instructions) stay."""
    model = ModelInfo("m", 400, "cl100k_base")
    messages = [
        _msg(instructions, 10, "sys"),
        _msg("user", 100, "u1"),
        _msg("assistant", 100, "a1"),
        _msg("user", 100, "u2"),
        _msg("assistant", 50, "a2"),
        _msg("user", 20, "u3"),
    ]
    fitted = fit_to_context(messages, model, max_tokens=100, reply_reserve=0)
    tags = [m["content"].split()[0] for m in fitted.messages]
    assert tags == ["sys", "u2", "a2", "u3"]
    assert fitted.dropped == 2
    assert fitted.prompt_tokens == count_messages(fitted.messages, "cl100k_base")
    assert fitted.prompt_tokens + 100 <= 400


def test_tool_results_of_a_dropped_turn_are_dropped_with_it() -> None:
    model = ModelInfo("m", 200, "cl100k_base")
    messages = [
        {**_msg("assistant", 110, "a1"), "tool_calls": "x"},
        _msg("tool", 5, "t1"),
        _msg("user", 20, "u2"),
    ]
    # dropping the assistant turn alone would fit, but its tool result must go with it
    fitted = fit_to_context(messages, model, max_tokens=50, reply_reserve=0)
    assert [m["role"] for m in fitted.messages] == ["user"]
    assert fitted.dropped == 2


def test_no_max_tokens_reserves_room_for_a_reply() -> None:
    model = ModelInfo("m", 200, "cl100k_base")
    messages = [_msg("user", 100, "u1"), _msg("user", 100, "u2")]
    fitted = fit_to_context(messages, model, max_tokens=None, reply_reserve=40)
    assert fitted.dropped == 1
    assert fitted.prompt_tokens <= 160


def test_prompt_that_cannot_fit_is_rejected_with_context_length_exceeded() -> None:
    model = ModelInfo("m", 100, "cl100k_base")
    with pytest.raises(ContextLengthExceeded) as info:
        fit_to_context([_msg("system", 10), _msg("user", 200)], model, 10, 0)
    assert info.value.type == "context_length_exceeded"
    assert info.value.status == 400


def test_max_tokens_larger_than_the_window_is_rejected() -> None:
    model = ModelInfo("m", 100, "cl100k_base")
    with pytest.raises(ContextLengthExceeded) as info:
        fit_to_context([_msg("user", 1)], model, max_tokens=500, reply_reserve=0)
    assert info.value.param == "max_tokens"


def test_a_tool_call_whose_results_end_the_conversation_is_never_split() -> None:
    """The answer being asked for needs the call and every result: dropping the call and
    keeping the last result (what the trimming did) is refused upstream, so a prompt that
    only fits without them does not fit."""
    model = ModelInfo("m", 200, "cl100k_base")
    messages = [
        _msg("user", 20, "u1"),
        {**_msg("assistant", 60, "a1"), "tool_calls": "x"},
        _msg("tool", 5, "t1"),
        _msg("tool", 40, "t2"),
    ]
    with pytest.raises(ContextLengthExceeded):
        fit_to_context(messages, model, max_tokens=150, reply_reserve=0)
    fitted = fit_to_context(messages, model, max_tokens=70, reply_reserve=0)
    assert [m["content"].split()[0] for m in fitted.messages] == ["a1", "t1", "t2"]
