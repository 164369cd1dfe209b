"""The settings are declared once (``sluice/settings.py``) and everything else agrees with it.

- the README's configuration tables are exactly what the declaration prints;
- every environment variable the code, the Procfile and docker-compose.yml read is declared,
  with the default the reading code falls back to; every declared one is read somewhere;
- ``Settings.from_env`` reads each declared variable as its type says, and with nothing set
  gives ``Settings()``; gunicorn.conf.py reads its variables through the declaration.

Pure: no Redis, no network, no process started.
"""

from __future__ import annotations

import ast
import difflib
import re
import typing
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
import yaml

from sluice.settings import OTHERS, VARIABLES, Settings, Var, markdown, read_env
from tests.helpers.support import ROOT

BEGIN = "<!-- printed by `python -m sluice.settings`: edit sluice/settings.py, not these tables -->"
END = "<!-- end of the generated tables -->"

# what Sluice's processes run: a variable read here must be declared
PYTHON_SOURCES = ("gateway", "worker", "sluice", "devtools", "sluice_cli", "gunicorn.conf.py")
SHELL_SOURCES = ("Procfile", "docker-compose.yml")
# what only the test suite and the benchmark read: they may be named in the docs, undeclared
TOOLING_SOURCES = ("tests", "bench")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment where no declared variable is set (a developer's shell may set some)."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- the README ---------------------------------------------------------------------------


def readme_tables() -> str:
    text = (ROOT / "README.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "the README lost its markers"
    return text.split(BEGIN, 1)[1].split(END, 1)[0].lstrip("\n")


def test_readme_tables_are_the_declaration_printed() -> None:
    generated, written = markdown(), readme_tables()
    diff = "".join(
        difflib.unified_diff(
            written.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            "README.md",
            "python -m sluice.settings",
        )
    )
    assert written == generated, (
        "README.md's configuration tables differ from sluice/settings.py: paste the output "
        f"of `python -m sluice.settings` between its markers\n{diff}"
    )


def test_every_declared_variable_has_one_row_in_the_readme() -> None:
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \|", readme_tables(), re.MULTILINE)
    assert sorted(rows) == sorted(VARIABLES)


# --- the sources: every variable read is declared -----------------------------------------


@dataclass(frozen=True)
class Read:
    """One place that reads an environment variable."""

    name: str | None  # None: the name is not a literal, so no test can check it
    default: str | None  # the literal fallback the reading code gives, if any
    where: str


def _is_environ(node: ast.expr) -> bool:
    """``os.environ`` or a bare ``environ`` (``from os import environ``)."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ" and isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id == "environ"


def _reads_by_call(func: ast.expr) -> bool:
    """``os.environ.get/setdefault/pop``, ``os.getenv`` and the declaration's ``read_env``."""
    if isinstance(func, ast.Attribute):
        if func.attr in ("get", "setdefault", "pop") and _is_environ(func.value):
            return True
        if func.attr == "getenv" and isinstance(func.value, ast.Name) and func.value.id == "os":
            return True
        return func.attr == "read_env"
    return isinstance(func, ast.Name) and func.id in ("getenv", "read_env")


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def python_reads(source: str, where: str) -> list[Read]:
    found: list[Read] = []
    for node in ast.walk(ast.parse(source, where)):
        key: ast.expr | None = None
        default: ast.expr | None = None
        if isinstance(node, ast.Call) and _reads_by_call(node.func) and node.args:
            key = node.args[0]
            default = node.args[1] if len(node.args) > 1 else None
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            key = node.slice
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.ops[0], ast.In | ast.NotIn)
            and _is_environ(node.comparators[0])
        ):
            key = node.left
        if key is not None:
            line = f"{where}:{getattr(key, 'lineno', '?')}"
            found.append(Read(_literal(key), _literal(default), line))
    return found


# ${NAME}, ${NAME:-default}, ${NAME-default}, $NAME
SHELL_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_]\w*)")


def shell_reads(text: str, where: str) -> list[Read]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in SHELL_REFERENCE.finditer(line):
            name = match.group(1) or match.group(3)
            found.append(Read(name, match.group(2), f"{where}:{number}"))
    return found


def compose_sets(text: str) -> list[Read]:
    """The variables docker-compose.yml gives the containers (its ``environment`` keys)."""
    compose = yaml.safe_load(text)
    blocks = [compose.get("x-sluice", {}), *compose.get("services", {}).values()]
    found = []
    for block in blocks:
        environment = block.get("environment") or {}
        if isinstance(environment, list):  # the NAME=value form
            environment = dict(item.partition("=")[::2] for item in environment)
        found.extend(Read(name, None, "docker-compose.yml: environment") for name in environment)
    return found


def reads_in(sources: tuple[str, ...]) -> list[Read]:
    found: list[Read] = []
    for source in sources:
        path = ROOT / source
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            where = str(file.relative_to(ROOT))
            if file.suffix == ".py":
                found.extend(python_reads(file.read_text(), where))
            else:
                found.extend(shell_reads(file.read_text(), where))
                if file.name == "docker-compose.yml":
                    found.extend(compose_sets(file.read_text()))
    return found


def product_reads() -> list[Read]:
    return reads_in(PYTHON_SOURCES + SHELL_SOURCES)


def as_set(var: Var) -> str:
    """The default as one would write it in the environment ("" for unset)."""
    shown = var.shown_default()
    return "" if shown == "unset" else shown.strip("`")


def test_the_scanner_sees_every_way_of_reading_a_variable() -> None:
    source = (
        "import os\nfrom os import environ, getenv\n"
        "a = os.environ.get('A', 'a')\nb = os.environ['B']\nc = os.getenv('C')\n"
        "d = environ.get('D')\ne = getenv('E', 'e')\nf = 'F' in os.environ\n"
        "g = read_env('G')\nh = settings.read_env('H')\nos.environ.setdefault('I', 'i')\n"
        "os.environ['J'] = 'set'\nk = os.environ.get(name)\n"
    )
    found = {(r.name, r.default) for r in python_reads(source, "example.py")}
    assert found == {
        ("A", "a"),
        ("B", None),
        ("C", None),
        ("D", None),
        ("E", "e"),
        ("F", None),
        ("G", None),
        ("H", None),
        ("I", "i"),
        ("J", None),
        (None, None),
    }
    shell = shell_reads("web: run --port $PORT --n ${N:-3} ${Q}", "Procfile")
    assert [(r.name, r.default) for r in shell] == [("PORT", None), ("N", "3"), ("Q", None)]


def test_the_scanner_finds_the_reads_it_is_known_for() -> None:
    """Guards the scan itself: were it blind, the next tests would pass vacuously."""
    names = {read.name for read in product_reads()}
    assert {"WEB_CONCURRENCY", "SLUICE_WORKER_METRICS_PORT", "WORKER_CONCURRENCY"} <= names
    assert {"SLUICE_URL", "SLUICE_LOG_FORMAT", "REDIS_URL"} <= names


def test_every_variable_read_anywhere_is_declared() -> None:
    undeclared = [
        f"{r.where}: {r.name}" for r in product_reads() if r.name and r.name not in VARIABLES
    ]
    assert not undeclared, f"declare these in sluice/settings.py: {undeclared}"


def test_variable_names_are_literals_outside_the_declaration() -> None:
    """A name computed at run time is a variable no table can list."""
    hidden = [r.where for r in product_reads() if r.name is None and "settings.py" not in r.where]
    assert not hidden


def test_reading_code_falls_back_to_the_declared_default() -> None:
    """``os.environ.get("X", "…")`` and ``${X:-…}`` may still name a default: the declared one."""
    wrong = [
        f"{r.where}: {r.name} falls back to {r.default!r}, declared {as_set(VARIABLES[r.name])!r}"
        for r in product_reads()
        if r.name in VARIABLES and r.default is not None and r.default != as_set(VARIABLES[r.name])
    ]
    assert not wrong


def test_every_variable_declared_beside_settings_is_read_somewhere() -> None:
    """A declaration nothing reads documents a setting that does nothing."""
    read = {r.name for r in product_reads()}
    assert [var.name for var in OTHERS if var.name not in read] == []


def test_the_docs_name_only_variables_something_reads() -> None:
    """``SLUICE_*`` in README.md and docs/ is declared, or read by the tests or the benchmark."""
    known = set(VARIABLES) | {r.name for r in reads_in(TOOLING_SOURCES)}
    named: dict[str, str] = {}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in re.findall(r"\bSLUICE_[A-Z0-9_]*[A-Z0-9]\b", doc.read_text()):
            named.setdefault(name, doc.name)
    assert {name: doc for name, doc in named.items() if name not in known} == {}


# --- Settings.from_env parses what is declared ---------------------------------------------

HINTS = typing.get_type_hints(Settings)
# per field type: a value as one would set it, and what the field must then hold
SAMPLES: dict[object, tuple[str, object]] = {
    int: (" 7 ", 7),
    float: ("2.5", 2.5),
    bool: (" 1 ", True),
    str: (" some-value ", "some-value"),
    tuple[str, ...]: (" a, b ,,c ", ("a", "b", "c")),
    str | None: (" s3cret ", " s3cret "),  # keys are taken as given
}
SPECIAL: dict[str, tuple[str, object]] = {
    "OPENAI_BASE_URL": ("http://llm.example/v1/", "http://llm.example/v1"),
    "REDIS_SSL_CERT_REQS": ("NONE", "none"),
}
FIELDS = [(f.name, f.metadata["env"]) for f in fields(Settings)]


@pytest.mark.parametrize(("field_name", "var"), FIELDS, ids=[var.name for _, var in FIELDS])
def test_from_env_reads_each_declared_variable(
    clean_env: pytest.MonkeyPatch, field_name: str, var: Var
) -> None:
    raw, expected = SPECIAL.get(var.name) or SAMPLES[HINTS[field_name]]
    clean_env.setenv(var.name, raw)
    settings = Settings.from_env()
    value = getattr(settings, field_name)
    assert (value, type(value)) == (expected, type(expected))
    assert settings.with_(**{field_name: getattr(Settings(), field_name)}) == Settings()


@pytest.mark.parametrize("blank", ["", "   "])
@pytest.mark.parametrize(("field_name", "var"), FIELDS, ids=[var.name for _, var in FIELDS])
def test_an_empty_variable_counts_as_unset(
    clean_env: pytest.MonkeyPatch, field_name: str, var: Var, blank: str
) -> None:
    clean_env.setenv(var.name, blank)
    assert getattr(Settings.from_env(), field_name) == getattr(Settings(), field_name)


def test_with_nothing_set_from_env_gives_the_defaults(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings.from_env() == Settings()
    assert Settings().redis_url == "redis://127.0.0.1:6379/0"  # the README's first row


@pytest.mark.parametrize("var", list(VARIABLES.values()), ids=list(VARIABLES))
def test_each_default_as_the_readme_writes_it_reads_back_as_the_default(var: Var) -> None:
    if as_set(var):
        assert var.read({var.name: as_set(var)}) == var.default
    else:
        assert var.read({}) is var.default and var.default in (None, "", ())


def test_overrides_win_and_an_unknown_one_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SLUICE_JOB_TTL", "not a number")  # overridden: never parsed
    assert Settings.from_env(job_ttl=5).job_ttl == 5
    with pytest.raises(TypeError, match="job_tll"):
        Settings.from_env(job_tll=5)


def test_keys_stay_out_of_repr() -> None:
    settings = Settings(openai_api_key="sk-1", access_keys=("ak-2",), secret_key="sec-3")
    assert not {"sk-1", "ak-2", "sec-3"} & set(re.findall(r"[\w-]+", repr(settings)))
    assert {var.name for var in VARIABLES.values() if var.secret} == {
        "CELERY_BROKER_URL",  # its password
        "REDIS_SENTINEL_PASSWORD",
        "OPENAI_API_KEY",
        "SLUICE_ACCESS_KEYS",
        "SLUICE_SECRET_KEY",
        "SLUICE_UPSTREAM_API_KEY",
    }


# --- the variables read beside Settings -----------------------------------------------------


def gunicorn_config() -> dict[str, object]:
    """What gunicorn.conf.py sets, run as test_layout.py runs it."""
    namespace: dict[str, object] = {}
    exec((ROOT / "gunicorn.conf.py").read_text(), namespace)
    keys = ("bind", "workers", "worker_connections", "graceful_timeout", "accesslog")
    return {key: namespace[key] for key in (*keys, "loglevel", "forwarded_allow_ips")}


def test_gunicorn_reads_its_variables_through_the_declaration(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # else it makes a directory
    assert gunicorn_config() == {
        "bind": "0.0.0.0:8000",
        "workers": 2,
        "worker_connections": 2000,
        "graceful_timeout": 20,
        "accesslog": "-",
        "loglevel": "info",
        "forwarded_allow_ips": "127.0.0.1",
    }
    for name, value in {
        "PORT": "9000",
        "WEB_CONCURRENCY": "3",
        "SLUICE_WORKER_CONNECTIONS": "10",
        "SLUICE_GRACEFUL_TIMEOUT": "5",
        "SLUICE_ACCESS_LOG": "0",
        "SLUICE_LOG_LEVEL": "Warning",
        "FORWARDED_ALLOW_IPS": "*",
    }.items():
        clean_env.setenv(name, value)
    assert gunicorn_config() == {
        "bind": "0.0.0.0:9000",
        "workers": 3,
        "worker_connections": 10,
        "graceful_timeout": 5,
        "accesslog": None,
        "loglevel": "warning",
        "forwarded_allow_ips": "*",
    }


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("0", False), ("off", False)])
def test_a_flag_is_one_or_zero(clean_env: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    clean_env.setenv("SLUICE_ACCESS_LOG", raw)
    assert read_env("SLUICE_ACCESS_LOG") is expected


def test_a_mistyped_flag_fails_rather_than_meaning_off(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SLUICE_ACCESS_LOG", "maybe")
    with pytest.raises(ValueError, match="maybe"):
        read_env("SLUICE_ACCESS_LOG")


def test_reading_an_undeclared_variable_is_an_error() -> None:
    name = "SLUICE_" + "NOT_A_SETTING"  # not a literal: the docs may not name it
    with pytest.raises(KeyError, match=name):
        read_env(name)


def test_the_replicated_watermark_defaults_on_with_sentinels_only() -> None:
    from sluice.replication import min_replicas

    assert min_replicas(Settings()) == 0
    assert min_replicas(Settings(redis_sentinels=("h:26379",))) == 1
    assert min_replicas(Settings(redis_sentinels=("h:26379",), redis_min_replicas=0)) == 0
    assert min_replicas(Settings(redis_min_replicas=2)) == 2
    assert min_replicas(Settings(redis_cluster=True)) == 0  # chosen there, not a default
    assert min_replicas(Settings(redis_cluster=True, redis_min_replicas=1)) == 1
