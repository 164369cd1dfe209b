"""How far a reader must follow one job, and how much of ``sluice/`` is really shared.

    python -m bench.module_path            # needs a Redis on REDIS_URL (default 127.0.0.1)

Two figures for docs/architecture.md:

1. **Modules crossed** from ``POST /v1/jobs`` (``"stream": true``) to the first ``delta``
   frame the client reads: the project modules (``gateway/``, ``worker/``, ``sluice/``)
   whose functions run on that path, in any thread. The gateway runs in this process
   (Flask's test client, streaming), the worker's task runs in a thread here on the job
   the gateway enqueued, the upstream is the fake one over real HTTP. A first job warms
   every cache; the second is traced (``threading.setprofile``), from the request until
   the first delta frame arrives.
2. **Lines in sluice/ that are not shared run-time code**: the lines of the ``sluice/``
   modules that the gateway and the worker do not both import, directly or through
   other modules, anywhere in their code (read from the source with ``ast``).
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import secrets
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("gateway", "worker", "sluice")


def _module_of(path: str) -> str | None:
    try:
        rel = Path(path).resolve().relative_to(ROOT)
    except ValueError:
        return None
    if not rel.parts or rel.parts[0] not in PROJECT or "fake_upstream" in rel.name:
        return None  # (the fake upstream lived in sluice/ once: it is not the path)
    return str(rel)


def modules_crossed() -> list[str]:
    """The project modules that run between the POST and the first delta frame."""
    crossed: set[str] = set()
    tracing = threading.Event()

    def profile(frame: Any, event: str, _arg: Any) -> None:
        if event == "call" and tracing.is_set():
            module = _module_of(frame.f_code.co_filename)
            if module is not None:
                crossed.add(module)

    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        fake = importlib.import_module("devtools.fake_upstream")
    except ImportError:  # the layout before the fake upstream left sluice/ (to measure it)
        fake = importlib.import_module("sluice.fake_upstream")
    upstream = fake.FakeUpstream().start()
    prefix = f"sluice-path-{secrets.token_hex(4)}"
    os.environ.update(
        OPENAI_BASE_URL=upstream.base_url,
        OPENAI_API_KEY="sk-path",
        SLUICE_KEY_PREFIX=prefix,
        SLUICE_QUEUE=f"{prefix}-q",
        SLUICE_LOG_LEVEL="WARNING",
    )
    from gateway import create_app
    from worker import celery_app

    app = create_app()
    client = app.test_client()
    services = app.extensions["sluice"]
    queue = os.environ["SLUICE_QUEUE"]

    def work() -> None:  # the Celery worker's consumer, reduced to its task call
        while True:
            _queue, raw = services.redis.brpop([queue])
            celery_app.run_job(json.loads(raw)["headers"]["id"])

    threading.Thread(target=work, daemon=True).start()

    def first_delta(trace: bool) -> None:
        body = {"model": "gpt-4o-mini", "stream": True,
                "messages": [{"role": "user", "content": "trace me"}]}  # fmt: skip
        if trace:
            tracing.set()
        response = client.post("/v1/jobs", json=body, buffered=False)
        for chunk in response.response:
            if b"event: delta" in chunk:
                break
        tracing.clear()
        for _ in response.response:  # read the rest: the job ends before the next
            pass
        response.close()

    first_delta(trace=False)
    first_delta(trace=True)
    upstream.stop()
    return sorted(crossed)


def _imports(path: Path) -> set[str]:
    """The project modules a file imports, at any depth in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in PROJECT:
                found.add(name)
    return found


def _file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _closure(start: list[Path]) -> set[Path]:
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imports(path):
            target = _file(module)
            if target is not None and target not in seen:
                todo.append(target)
    return seen


def unshared_sluice_lines() -> tuple[int, list[str]]:
    gateway = _closure([*sorted(ROOT.glob("gateway/**/*.py")), ROOT / "gunicorn.conf.py"])
    worker = _closure(sorted(ROOT.glob("worker/**/*.py")))
    modules = sorted(ROOT.glob("sluice/**/*.py"))
    unshared = [p for p in modules if not (p in gateway and p in worker)]
    lines = sum(len(p.read_text().splitlines()) for p in unshared if p.name != "__init__.py")
    return lines, [str(p.relative_to(ROOT)) for p in unshared]


def main() -> int:
    crossed = modules_crossed()
    lines, unshared = unshared_sluice_lines()
    print(f"modules crossed from POST /v1/jobs to the first delta frame: {len(crossed)}")
    for module in crossed:
        print(f"  {module}")
    print(f"lines in sluice/ that are not shared run-time code: {lines}")
    for module in unshared:
        print(f"  {module}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
