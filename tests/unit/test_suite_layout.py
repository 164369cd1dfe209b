"""The test suite's own layout: every test is in one layer, the unit layer has no network,
and tests share helpers through tests/helpers, never through a conftest."""

from __future__ import annotations

import re
import socket

import pytest
from pytest_socket import SocketBlockedError

from tests.helpers.support import ROOT

TESTS = ROOT / "tests"
LAYERS = {"unit", "redis", "integration", "browser"}


@pytest.mark.filterwarnings("ignore:A test tried to use socket:UserWarning")
def test_a_unit_test_cannot_open_a_socket_or_resolve_a_name() -> None:
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(SocketBlockedError):
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(SocketBlockedError):
        socket.getaddrinfo("localhost", 6379)
    with pytest.raises(SocketBlockedError):
        socket.create_connection(("127.0.0.1", 6379), timeout=1)


def test_every_test_file_is_in_one_layer() -> None:
    outside = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("test_*.py")
        if path.relative_to(TESTS).parts[0] not in LAYERS
    ]
    assert outside == []


def test_no_test_imports_from_a_conftest() -> None:
    importing = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if re.search(r"^\s*(from|import) tests\.(\w+\.)*conftest\b", path.read_text(), re.M)
    ]
    assert importing == []
