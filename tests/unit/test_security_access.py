"""Issue #19, access keys: ``AccessControl.authenticate`` decides with
``hmac.compare_digest``, never with ``==``.

A plain ``==`` on strings returns at the first differing character, so the time a refusal
takes tells an attacker how much of a guessed key was right, character by character. These
tests spy on ``hmac.compare_digest`` to show that it sees the presented key and that its
verdict is final. The routes' 401s, on the real gateway, are in
``tests/integration/test_security_access.py``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

import pytest
from flask import Flask, g

import gateway.access
from gateway.access import AccessControl, owner_id
from sluice.errors import Unauthorized
from sluice.settings import Settings

KEY = "sk-sluice-unit-0123456789abcdef"
OTHER = "sk-sluice-unit-other-key"


@pytest.fixture
def access() -> AccessControl:
    return AccessControl(Settings(access_keys=(KEY, OTHER), secret_key="unit-secret"))


@pytest.fixture
def app() -> Iterator[Flask]:
    """A bare Flask app: ``authenticate`` needs a request context, not the gateway."""
    yield Flask(__name__)


@pytest.fixture
def digest_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every ``hmac.compare_digest`` call ``gateway.access`` makes, with its arguments;
    the real function still answers."""
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(gateway.access.hmac, "compare_digest", spy)
    return calls


def authenticate(app: Flask, access: AccessControl, key: str) -> str:
    """The owner ``authenticate`` finds for ``Authorization: Bearer <key>`` on a /v1 path."""
    headers = {"Authorization": f"Bearer {key}"}
    with app.test_request_context("/v1/jobs", method="POST", headers=headers):
        access.authenticate()
        return str(g.owner)


def test_the_presented_key_is_compared_with_hmac_compare_digest(
    app: Flask, access: AccessControl, digest_calls: list[tuple[str, str]]
) -> None:
    assert authenticate(app, access, KEY) == owner_id(KEY)
    assert digest_calls == [(KEY, KEY)]  # the configured key against the presented one


def test_a_key_differing_only_in_its_last_character_is_refused(
    app: Flask, access: AccessControl, digest_calls: list[tuple[str, str]]
) -> None:
    """The near miss is looked up by its SHA-256 (which shares nothing with the right
    key's), so no comparison of the keys' characters happens at all, and it is a 401."""
    near_miss = KEY[:-1] + ("0" if KEY[-1] != "0" else "1")
    with pytest.raises(Unauthorized):
        authenticate(app, access, near_miss)
    assert not digest_calls


def test_the_verdict_of_compare_digest_is_final(
    app: Flask, access: AccessControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``compare_digest`` answering no, even the right key is refused: nothing else
    (an ``==``, the owner lookup alone) lets a key in."""
    seen: list[tuple[str, str]] = []

    def refuse(a: str, b: str) -> bool:
        seen.append((a, b))
        return False

    monkeypatch.setattr(gateway.access.hmac, "compare_digest", refuse)
    with pytest.raises(Unauthorized):
        authenticate(app, access, KEY)
    assert seen == [(KEY, KEY)]


def test_gunicorn_s_error_log_redacts_the_token_of_a_request_it_could_not_handle(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """gunicorn names the URI of a request whose handling raised, query string and all,
    and quotes a request line it could not parse: neither may carry a working token."""
    from gunicorn.config import Config

    from gateway.access_log import RedactingLogger

    logger = RedactingLogger(Config())
    uri = "/v1/jobs/job_x/events?token=eyJqIjoiam9iX3gifQ.secret-signature&after=3"
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("Error handling request %s %s", "GET", uri)
    logger.warning(f"Invalid request from ip=127.0.0.1: Invalid HTTP request line: 'GET {uri} X'")
    err = capsys.readouterr().err
    assert "Error handling request GET /v1/jobs/job_x/events?token=[redacted]&after=3" in err
    assert "Invalid HTTP request line: 'GET /v1/jobs/job_x/events?token=[redacted]" in err
    assert "secret-signature" not in err
