"""`make run`'s launcher starts the gateway on the port it announces."""

from __future__ import annotations

import pytest

from devtools.launcher import honcho_command
from sluice.settings import Settings


@pytest.mark.parametrize("port", [8000, 8123])
def test_the_web_process_gets_the_announced_port(port: int) -> None:
    command = honcho_command(Settings.from_env(port=port))
    assert command[command.index("--port") + 1] == str(port)  # not honcho's default 5000


def test_without_port_in_the_environment_it_is_8000(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORT", raising=False)
    command = honcho_command(Settings.from_env())
    assert command[command.index("--port") + 1] == "8000"
