"""The fake upstream's pure functions: how it reads a model name, and the tricky replies
it streams (its wire behaviour is tested over real HTTP in tests/redis/test_fake_upstream.py)."""

from __future__ import annotations

from devtools.fake_upstream import expected_reply, parse_model, split_pieces

HELLO = [{"role": "user", "content": "Say hi — ça va? 🙂"}]


def test_parse_model() -> None:
    assert parse_model("slow;words=40;delay=0.05") == ("slow", {"words": "40", "delay": "0.05"})
    assert parse_model("gpt-4o-mini") == ("openai", {})
    assert parse_model("sluice-demo;words=3") == ("openai", {"words": "3"})
    assert parse_model("http-429-then-ok;failures=2") == ("http-429-then-ok", {"failures": "2"})


def test_reply_text_is_tricky_and_pieces_rejoin() -> None:
    body = {"model": "openai", "messages": HELLO}
    text = expected_reply(body)
    assert "«Say hi — ça va? 🙂»" in text
    assert "\n" in text.strip() and "\u2028" in text
    assert any(len(ch.encode()) > 2 for ch in text)
    assert "".join(split_pieces(text)) == text
    assert all(len(p) <= 5 for p in split_pieces(text))
    assert expected_reply(body, 1).startswith("[choice 1] ")
    assert expected_reply(body) == expected_reply({**body, "messages": [HELLO[0]]})
    parts = [{"role": "user", "content": [{"type": "text", "text": "Say hi — ça va? 🙂"}]}]
    assert expected_reply({**body, "messages": parts}) == text
    longer = expected_reply({**body, "model": "openai;words=30"})
    assert len(longer) > len(text)
