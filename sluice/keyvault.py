"""Upstream keys that users bring per request, encrypted while a job needs them.

A key sent in the ``X-Upstream-Api-Key`` header is encrypted with the server's
``SLUICE_SECRET_KEY`` (Fernet: AES-128-CBC + HMAC-SHA256, with a timestamp) and stored
in the job's hash, never in the Celery message. The worker decrypts it for that job only;
the token is refused once older than the job may live, and the ciphertext is deleted from
Redis when the job ends. The clear key is never stored, logged or returned.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from sluice.errors import InvalidRequest, KeyVaultError


class KeyVault:
    def __init__(self, secret: str, max_age: int) -> None:
        digest = hashlib.sha256(secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self.max_age = max_age

    def seal(self, api_key: str) -> str:
        return self._fernet.encrypt(api_key.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode(), ttl=self.max_age).decode()
        except InvalidToken:
            raise KeyVaultError(
                "the job's upstream key cannot be decrypted (expired, or SLUICE_SECRET_KEY "
                "differs between gateway and worker)"
            ) from None


def vault_for(secret: str | None, max_age: int) -> KeyVault | None:
    return KeyVault(secret, max_age) if secret else None


def validate_user_key(value: str, param: str = "X-Upstream-Api-Key") -> str:
    key = value.strip()
    if not key or len(key) > 512 or not key.isascii() or any(c.isspace() for c in key):
        raise InvalidRequest(f"{param} is not a valid API key", param=param)
    return key
