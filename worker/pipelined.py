"""Several Redis commands in one round trip, Lua script calls among them."""

from __future__ import annotations

from collections.abc import Sequence

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from sluice.store import ScriptCall

Command = ScriptCall | tuple[str, ...]


def send_together(client: redis.Redis, commands: Sequence[Command]) -> list[object]:
    """Each command's reply, or the error it alone raised, in order; raises only what
    fails the whole round trip (a connection error).

    A script call goes as EVALSHA; if Redis lost its script cache (a restart, SCRIPT
    FLUSH), the scripts are loaded and the calls that met NOSCRIPT are sent again.
    """
    replies = _pipeline(client, commands)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        lost: dict[str, Script] = {}
        for i in missing:
            call = commands[i]
            assert isinstance(call, ScriptCall)  # only EVALSHA meets NOSCRIPT
            lost[call.script.sha] = call.script
        for script in lost.values():  # each once, however many calls met NOSCRIPT
            client.script_load(script.script)
        again = _pipeline(client, [commands[i] for i in missing])
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return replies


def _pipeline(client: redis.Redis, commands: Sequence[Command]) -> list[object]:
    pipe = client.pipeline(transaction=False)
    for command in commands:
        if isinstance(command, ScriptCall):
            pipe.evalsha(command.script.sha, len(command.keys), *command.keys, *command.args)
        else:
            pipe.execute_command(*command)
    return pipe.execute(raise_on_error=False)
