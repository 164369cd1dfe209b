"""The layout DESIGN.md sets: gateway and worker never import each other; deploy files agree."""

from __future__ import annotations

import ast
import fnmatch
import shlex

import pytest
import yaml

from tests.helpers.support import ROOT


def imported_packages(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(("package", "forbidden"), [("gateway", "worker"), ("worker", "gateway")])
def test_gateway_and_worker_do_not_import_each_other(package: str, forbidden: str) -> None:
    assert forbidden not in imported_packages(package)


def test_shared_code_imports_neither_side() -> None:
    assert not {"gateway", "worker"} & imported_packages("sluice")


def test_worker_never_imports_flask() -> None:
    assert "flask" not in imported_packages("worker")


def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {
        name: shlex.split(command)
        for name, _, command in (line.partition(":") for line in lines if line.strip())
    }


def test_procfile_runs_gunicorn_with_gevent_and_a_celery_worker() -> None:
    processes = procfile()
    assert set(processes) == {"web", "worker"}
    assert processes["web"][0] == "gunicorn" and "gateway.wsgi:app" in processes["web"]
    worker = processes["worker"]
    assert worker[:4] == ["celery", "--app", "worker.celery_app", "worker"]
    assert worker[worker.index("--pool") + 1] == "gevent"


def test_gunicorn_config_binds_port_and_uses_gevent() -> None:
    namespace: dict[str, object] = {}
    exec((ROOT / "gunicorn.conf.py").read_text(), namespace)
    assert namespace["worker_class"] == "gevent"
    assert str(namespace["bind"]).startswith("0.0.0.0:")


def test_compose_file_has_redis_web_and_worker_matching_the_procfile() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "web", "worker", "flower"} <= set(services)
    assert services["flower"]["command"][:4] == ["celery", "--app", "worker.celery_app", "flower"]
    assert "--appendonly" in services["redis"]["command"]
    command = services["redis"]["command"]
    assert command[command.index("--appendfsync") + 1] == "always"  # no acked event lost
    assert "redis-data" in compose["volumes"]
    assert "healthcheck" in services["redis"]
    assert "healthcheck" in services["web"]
    processes = procfile()
    assert services["web"]["command"] == processes["web"]
    worker = [
        "100" if arg == "${WORKER_CONCURRENCY:-100}" else "sluice" if "SLUICE_QUEUE" in arg else arg
        for arg in processes["worker"]
    ]
    assert services["worker"]["command"] == worker
    for name in ("web", "worker"):
        env = services[name]["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert "OPENAI_API_KEY" in env
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_scale_profile_runs_on_rabbitmq_and_a_redis_cluster() -> None:
    """The ``scale`` profile (docs/scaling.md): six cluster nodes joined by an init job,
    RabbitMQ, and a gateway and worker pointed at both, as the default ones otherwise."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    timeout = compose["configs"][services["rabbitmq"]["configs"][0]["source"]]["content"]
    assert timeout.strip() == "consumer_timeout = 21600000"  # above SLUICE_MAX_JOB_AGE, 6 h
    scale = {name for name, svc in services.items() if "scale" in svc.get("profiles", ())}
    nodes = {f"redis-node-{n}" for n in range(1, 7)}
    assert scale == nodes | {"rabbitmq", "redis-cluster-init", "web-scale", "worker-scale"}
    for name in nodes:
        command = services[name]["command"]
        assert command[command.index("--cluster-enabled") + 1] == "yes"
        assert command[command.index("--cluster-announce-hostname") + 1] == name
        assert command[command.index("--appendfsync") + 1] == "always"
    init = services["redis-cluster-init"]
    assert set(init["depends_on"]) == nodes
    assert "--cluster-replicas 1" in init["command"][0]
    assert all(node + ":6379" in init["command"][0] for node in nodes)
    assert services["web-scale"]["command"] == services["web"]["command"]
    assert services["worker-scale"]["command"] == services["worker"]["command"]
    for name in ("web-scale", "worker-scale"):
        env = services[name]["environment"]
        assert env["SLUICE_REDIS_CLUSTER"] == "1"
        assert env["SLUICE_REDIS_MIN_REPLICAS"] == "1"  # the same on gateways and workers
        assert env["REDIS_URL"].startswith("redis://redis-node-")
        assert (
            env["CELERY_BROKER_URL"].startswith("amqp://")
            and "@rabbitmq:5672" in env["CELERY_BROKER_URL"]
        )
        depends = services[name]["depends_on"]
        assert depends["redis-cluster-init"]["condition"] == "service_completed_successfully"
        assert depends["rabbitmq"]["condition"] == "service_healthy"


def test_the_image_leaves_out_what_it_does_not_run() -> None:
    """``.dockerignore``: no history, tests, benchmark or development tools in the image
    (they were all shipped), and nothing the processes need left out."""
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "tests", "bench", "devtools", "web"} <= patterns
    shipped = ["gateway", "worker", "sluice", "gunicorn.conf.py", "Procfile", "requirements.txt"]
    for name in shipped:
        assert (ROOT / name).exists()
        assert not any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
