"""Optional access control: gateway access keys, job ownership, signed event URLs.

Off when ``SLUICE_ACCESS_KEYS`` is empty (local use): everyone is the same anonymous
client. With keys configured, every ``/v1`` route needs ``Authorization: Bearer <key>``
(the OpenAI SDKs send their ``api_key`` so), each job belongs to the key that created it,
and another key gets 404 for it, as for a job that does not exist. A browser's
``EventSource`` cannot send headers, so ``events_url`` carries a signed, expiring token
(itsdangerous, keyed by ``SLUICE_SECRET_KEY``) that opens that one job's stream.

Keys are compared in constant time and only their SHA-256 (the owner id) is stored.
This module alone decides who the caller is (``authenticate``, before every request);
routes read the answer with ``gateway.request.owner()``.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import g, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from gateway.request import bearer_key, events_token
from sluice.errors import NotFound, Unauthorized
from sluice.settings import Settings

PUBLIC_PREFIXES = ("/static/", "/healthz", "/readyz", "/openapi.json", "/metrics")
# the routes a signed token opens, each with its path parameter and the token's field
# for it: a job's events, and a conversation's (``/v1/conversations/<id>/events``)
TOKEN_ROUTES = {
    "jobs.job_events": ("job_id", "j"),
    "conversations.conversation_events": ("conversation_id", "c"),
}


def owner_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class AccessControl:
    def __init__(self, settings: Settings) -> None:
        self.enabled = bool(settings.access_keys)
        self._owners = {owner_id(k): k for k in settings.access_keys}
        self._tokens: URLSafeTimedSerializer | None = None
        self.token_ttl = settings.max_job_age
        if self.enabled:
            if not settings.secret_key:
                raise RuntimeError("SLUICE_ACCESS_KEYS needs SLUICE_SECRET_KEY (signs event URLs)")
            self._tokens = URLSafeTimedSerializer(settings.secret_key, salt="sluice-events")

    def authenticate(self) -> None:
        """Before each request: set ``g.owner`` from the access key, or from a job's
        signed events token, or refuse (401; 404 for a token that does not open this
        job, as for a job that does not exist)."""
        g.owner = ""
        if not self.enabled or request.path == "/" or request.path.startswith(PUBLIC_PREFIXES):
            return
        if request.method == "OPTIONS":  # CORS preflight carries no credentials
            return
        key = bearer_key()
        if key is not None:
            owner = owner_id(key)
            known = self._owners.get(owner)
            if known is not None and hmac.compare_digest(known, key):
                g.owner = owner
                return
        token = events_token()
        route = TOKEN_ROUTES.get(request.endpoint or "")
        if token and route and request.view_args:
            subject = str(request.view_args.get(route[0], ""))
            token_owner = self.events_token_owner(subject, token, route[1])
            if token_owner is None:
                raise NotFound(f"no such {route[0][:-3]} {subject!r} (it may have expired)")
            g.owner = token_owner
            return
        raise Unauthorized("send a valid access key: Authorization: Bearer <key>")

    def events_token(self, subject: str, owner: str, kind: str = "j") -> str | None:
        """A token that opens the events of one job (``kind`` "j") or one conversation
        ("c") for ``owner``."""
        if self._tokens is None:
            return None
        return self._tokens.dumps({kind: subject, "o": owner})

    def events_token_owner(self, subject: str, token: str, kind: str = "j") -> str | None:
        """The owner a valid token for this job (or conversation) was issued to, else
        None."""
        if self._tokens is None:
            return None
        try:
            data = self._tokens.loads(token, max_age=self.token_ttl)
        except BadSignature:
            return None
        return data.get("o") if isinstance(data, dict) and data.get(kind) == subject else None
