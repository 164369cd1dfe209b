"""Unit tests: no network at all, no Redis, no server; the whole layer runs in seconds.

Every test here runs with sockets disabled (pytest-socket's ``socket_disabled``, allowing
no host and no Unix socket): a test that opens a socket or resolves a name fails with
``SocketBlockedError``. A test that needs a socket belongs in ``tests/redis/`` (loopback)
or further up. Some tests run a fresh Python (``json_from_child``) to keep a
monkey-patch out of this process; those children open no socket either.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_network(socket_disabled: None) -> None:
    """Requesting pytest-socket's ``socket_disabled`` disables sockets before any fixture."""
