"""``make run``: the whole stack on one machine, for trying Sluice and for development.

Starts what is missing, then the Procfile's processes under honcho:
- a Redis server when nothing answers on ``REDIS_URL`` (see ``devtools.local_redis``);
- without ``OPENAI_API_KEY``, the DEMO upstream (``devtools.fake_upstream``), which streams
  canned answers so a newcomer sees the pipeline work; it says so in the logs and in
  ``GET /v1/models`` (``owned_by: sluice-demo-upstream``).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from devtools.fake_upstream import FakeUpstream
from devtools.local_redis import ensure_redis
from sluice.logs import configure_logging
from sluice.settings import Settings, read_env

log = logging.getLogger("devtools.launcher")
ROOT = Path(__file__).resolve().parent.parent


def honcho_command(settings: Settings) -> list[str]:
    """honcho gives the web process ``PORT`` from ``--port``, 5000 unless told: tell it
    the port this launcher announces (``PORT``, else 8000)."""
    return [sys.executable, "-m", "honcho", "start", "-f", "Procfile", "--port", str(settings.port)]


def main() -> int:
    configure_logging()
    settings = Settings.from_env()
    env = dict(os.environ)
    # the Procfile calls `gunicorn` and `celery`: find the ones of this interpreter's venv
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    if not settings.secret_key:
        # lets users bring their own upstream key (X-Upstream-Api-Key) in this session;
        # a deployment sets one stable SLUICE_SECRET_KEY for all its processes
        env["SLUICE_SECRET_KEY"] = secrets.token_urlsafe(32)
    redis_url, redis_process = ensure_redis(settings.redis_url)
    env["REDIS_URL"] = redis_url
    demo: FakeUpstream | None = None
    if not settings.openai_api_key:
        demo_port = int(read_env("SLUICE_DEMO_PORT"))
        demo = FakeUpstream(port=demo_port, demo=True).start()
        env["OPENAI_BASE_URL"] = demo.base_url
        log.warning(
            "No OPENAI_API_KEY set: using the DEMO upstream at %s, which streams canned "
            "answers (not a real LLM). Set OPENAI_API_KEY (and OPENAI_BASE_URL for another "
            "OpenAI-compatible server) to talk to a real model.",
            demo.base_url,
        )
    else:
        log.info("upstream: %s", settings.openai_base_url)
    log.info("open http://127.0.0.1:%d/ (API under /v1); Ctrl-C stops everything", settings.port)
    honcho = subprocess.Popen(honcho_command(settings), cwd=ROOT, env=env)

    def stop(signum: int, _frame: object) -> None:
        honcho.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    try:
        code = honcho.wait()
    except KeyboardInterrupt:  # honcho got the same SIGINT from the terminal
        code = honcho.wait()
    finally:
        if demo is not None:
            demo.stop()
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(10)
    return code


if __name__ == "__main__":
    sys.exit(main())
