"""Users' own upstream keys: verified, used for one job, stored only encrypted, never logged."""

from __future__ import annotations

import secrets

import httpx
import pytest

from sluice.redis_client import make_redis
from sluice.settings import Settings
from tests.helpers.stack import ProcessLogs
from tests.helpers.support import UPSTREAM_KEY, create_job, read_stream

pytestmark = pytest.mark.integration


def all_redis_values(settings: Settings) -> list[str]:
    r = make_redis(settings)
    values: list[str] = []
    for key in r.scan_iter("*"):
        kind = r.type(key)
        if kind == "string":
            values.append(str(r.get(key)))
        elif kind == "list":
            values += r.lrange(key, 0, -1)
        elif kind == "hash":
            values += [*r.hgetall(key).keys(), *r.hgetall(key).values()]
        elif kind == "set":
            values += list(r.smembers(key))
        elif kind == "zset":
            values += r.zrange(key, 0, -1)
    return values


def test_verify_tells_a_valid_key_from_an_invalid_one(client: httpx.Client) -> None:
    assert client.post("/v1/keys/verify", json={"api_key": UPSTREAM_KEY}).json() == {"valid": True}
    wrong = client.post("/v1/keys/verify", json={"api_key": "sk-nope-" + secrets.token_hex(8)})
    assert wrong.status_code == 200 and wrong.json() == {"valid": False}
    bad = client.post("/v1/keys/verify", json={"key": "x"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "api_key"


def test_a_users_own_key_is_used_for_their_job_only(client: httpx.Client) -> None:
    wrong = "sk-user-" + secrets.token_hex(12)
    job = client.post(
        "/v1/jobs",
        json={"model": "openai", "messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Upstream-Api-Key": wrong},
    ).json()
    events = read_stream(client, job["events_url"])
    assert events[-1].event == "error" and events[-1].data["error"]["status"] == 401
    # the server's own key still works for everyone else
    assert read_stream(client, create_job(client)["events_url"])[-1].event == "done"
    right = client.post(
        "/v1/jobs",
        json={"model": "openai", "messages": [{"role": "user", "content": "hi"}]},
        headers={"X-Upstream-Api-Key": UPSTREAM_KEY},
    ).json()
    assert read_stream(client, right["events_url"])[-1].event == "done"


def test_a_users_key_is_never_stored_in_clear_and_is_erased_when_the_job_ends(
    client: httpx.Client, settings: Settings, process_logs: ProcessLogs
) -> None:
    # a key the upstream accepts, so the job stays running (stalled) until we cancel it;
    # a refused key would end the job, and erase the sealed key, before we could look
    user_key = UPSTREAM_KEY
    job = client.post(
        "/v1/jobs",
        json={
            "model": "stall;fail_after=1;stall=30",
            "messages": [{"role": "user", "content": "hi"}],
        },
        headers={"X-Upstream-Api-Key": user_key},
    ).json()
    r = make_redis(settings)
    job_key = f"{settings.key_prefix}:job:{{{job['id']}}}"
    sealed = r.hget(job_key, "upstream_key")
    assert sealed and user_key not in sealed  # encrypted at rest
    assert not any(user_key in v for v in all_redis_values(settings))  # Celery queue too
    client.post(f"{job['url']}/cancel")
    assert r.hget(job_key, "upstream_key") is None  # gone once the job ended
    poll = client.get(job["url"]).text
    assert user_key not in poll and "upstream_key" not in poll
    for log in process_logs.directory.glob("*.log"):
        assert user_key not in log.read_text(errors="replace"), log.name


def test_models_can_be_listed_with_a_users_key(client: httpx.Client) -> None:
    bad = client.get("/v1/models", headers={"X-Upstream-Api-Key": "sk-bad-" + secrets.token_hex(6)})
    assert bad.status_code == 401 and bad.json()["error"]["type"] == "upstream_auth_error"
    good = client.get("/v1/models", headers={"X-Upstream-Api-Key": UPSTREAM_KEY})
    assert good.status_code == 200 and good.json()["data"]


def test_the_servers_key_is_nowhere_in_redis_logs_or_responses(
    settings: Settings, client: httpx.Client, process_logs: ProcessLogs
) -> None:
    key = settings.openai_api_key
    assert key
    job = create_job(client, model="http-401")  # an answer that talks about keys
    answers = [
        client.get("/v1/models").text,
        client.get(job["url"]).text,
        client.get(job["events_url"]).text,
        client.post("/v1/chat/completions", json={"model": "http-401", "messages": [
            {"role": "user", "content": "x"}]}).text,
    ]  # fmt: skip
    assert not any(key in answer for answer in answers)
    assert not any(key in v for v in all_redis_values(settings))
    for log in process_logs.directory.glob("*.log"):
        assert key not in log.read_text(errors="replace"), log.name
