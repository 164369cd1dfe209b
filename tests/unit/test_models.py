"""What each model family is sent: parameters and message roles (``sluice.models``)."""

from __future__ import annotations

from sluice.models import lookup, upstream_messages, upstream_parameters

MESSAGES = [{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "hi"}]


def test_a_developer_message_goes_to_other_models_as_system() -> None:
    sent = upstream_messages(lookup("gpt-4o-mini", 8192), MESSAGES)
    assert sent == [{"role": "system", "content": "Be terse."}, MESSAGES[1]]
    unknown = upstream_messages(lookup("llama-3-70b", 8192), MESSAGES)
    assert [m["role"] for m in unknown] == ["system", "user"]


def test_reasoning_models_get_developer_messages_as_they_are() -> None:
    assert upstream_messages(lookup("o3-mini", 8192), MESSAGES) == MESSAGES


def test_the_newer_parameters_are_sent_to_every_family() -> None:
    newer = {"reasoning_effort": "low", "verbosity": "low", "service_tier": "auto",
             "metadata": {"a": "b"}, "store": False}  # fmt: skip
    for model in ("o3-mini", "gpt-5", "gpt-4o-mini", "llama-3-70b"):
        assert upstream_parameters(lookup(model, 8192), newer) == newer
