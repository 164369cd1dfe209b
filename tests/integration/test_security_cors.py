"""CORS is off unless ``SLUICE_CORS_ORIGINS`` names origins, and then it is those alone
(issue #19), on real gunicorn gateways.

A browser lets a page on another origin read a response only when the response carries
``Access-Control-Allow-Origin`` for that origin (and send a non-simple request only when the
preflight ``OPTIONS`` does), so these headers are the whole of the claim. No response may
carry ``Access-Control-Allow-Credentials``: the API authenticates with a bearer key, never a
cookie, so a browser must not send or expose credentials across origins.

``tests/integration/test_access.py::test_cors_allows_the_configured_origin_only`` already
proves the configured origin's preflights (allowed headers, exposed headers) and that
another origin's preflight to ``/v1/jobs`` is refused; this adds the default (unset), the
actual requests besides the preflights, every API family, and credentials.
"""

from __future__ import annotations

import httpx
import pytest

from sluice.settings import Settings
from tests.helpers.stack import ProcessLogs, start_gateway

pytestmark = pytest.mark.integration
APP = "https://app.example"
EVIL = "http://evil.example"
BODY = {"model": "openai", "messages": [{"role": "user", "content": "hello"}]}
# One route of each family the CORS resources name (/v1 and /api), as a browser's
# preflight for a JSON POST with a bearer key would ask.
PREFLIGHT_PATHS = ("/v1/jobs", "/v1/chat/completions", "/v1/responses", "/api/chat")


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }


def cross_origin_responses(client: httpx.Client, origin: str) -> dict[str, httpx.Response]:
    """A preflight per API family and the actual requests a page on ``origin`` would make
    (list models, start a job, poll it, a 404), each sent with that ``Origin``."""
    responses = {
        f"OPTIONS {path}": client.options(path, headers=preflight_headers(origin))
        for path in PREFLIGHT_PATHS
    }
    sent = {"Origin": origin}
    responses["GET /v1/models"] = client.get("/v1/models", headers=sent)
    job = client.post("/v1/jobs", json=BODY, headers=sent)
    assert job.status_code == 202, job.text
    responses["POST /v1/jobs"] = job
    responses["GET /v1/jobs/<id>"] = client.get(job.json()["url"], headers=sent)
    responses["GET /v1/jobs/missing"] = client.get("/v1/jobs/missing", headers=sent)
    return responses


@pytest.fixture(scope="module")
def gateways(settings: Settings, process_logs: ProcessLogs) -> dict[str, str]:
    """Two gunicorn gateways on the session's Redis: one with ``SLUICE_CORS_ORIGINS`` unset
    (empty, whatever this machine's environment says), one allowing ``APP`` alone. No
    worker: CORS is the gateway's alone, and a queued job answers its poll. Stopped with
    the session's other processes, all at once (one by one, a graceful stop costs seconds)."""
    _, off = start_gateway(settings.with_(cors_origins=()), process_logs, "gateway-cors-off")
    _, one = start_gateway(settings.with_(cors_origins=(APP,)), process_logs, "gateway-cors-one")
    return {"off": off, "one": one}


def test_with_cors_origins_unset_no_origin_is_allowed_on_any_route(
    gateways: dict[str, str],
) -> None:
    """Off by default: neither another site nor the origin a deployment might later allow
    gets an allow-origin (or credentials) header, on a preflight or an actual request."""
    with httpx.Client(base_url=gateways["off"], timeout=30) as client:
        for origin in (EVIL, APP):
            for name, response in cross_origin_responses(client, origin).items():
                assert response.status_code < 500, (name, response.text)
                assert "access-control-allow-origin" not in response.headers, (origin, name)
                assert "access-control-allow-credentials" not in response.headers, name
                assert "access-control-allow-methods" not in response.headers, name


def test_with_one_cors_origin_only_that_origin_is_allowed_and_never_with_credentials(
    gateways: dict[str, str],
) -> None:
    """The configured origin gets itself back (not ``*``); any other origin gets no
    allow-origin header on the same routes; nobody gets credentials; the page and health
    routes, which are not CORS resources, answer no origin at all. (With one origin there is
    no ``Vary: Origin``, and it needs none: a cached answer naming ``APP`` lets no other
    origin read it.)"""
    with httpx.Client(base_url=gateways["one"], timeout=30) as client:
        for name, response in cross_origin_responses(client, APP).items():
            assert response.headers.get("access-control-allow-origin") == APP, name
            assert "access-control-allow-credentials" not in response.headers, name
        for name, response in cross_origin_responses(client, EVIL).items():
            assert "access-control-allow-origin" not in response.headers, name
            assert "access-control-allow-credentials" not in response.headers, name
        for path in ("/", "/healthz", "/openapi.json"):
            response = client.get(path, headers={"Origin": APP})
            assert response.status_code == 200, path
            assert "access-control-allow-origin" not in response.headers, path
