"""Log records stay one line each, whatever a client put in a value (logfmt and JSON)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from sluice.logs import FORMAT, JsonFormatter, TextFormatter, job_event

# a model name a client chose: no space, no quote, but CR/LF, a tab, "=" and a terminal
# escape, shaped to forge a second record
FORGED = "plain\r\nINJ3CTED\tevent=job.succeeded\x1b[31mred\x1b[0m\u2028x"
# logfmt: key=bare or key="json string"
PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def capture(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"sluice.test.logs.{id(out)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


@pytest.fixture
def text_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    yield capture(TextFormatter(FORMAT))


def logfmt(line: str) -> dict[str, str]:
    """The key=value pairs after the record's header, values decoded."""
    body = line.split("] ", 1)[1]
    pairs = {}
    for key, value in PAIR.findall(body):
        pairs[key] = json.loads(value) if value.startswith('"') else value
    assert " ".join(f"{k}={v}" for k, v in PAIR.findall(body)) == body, body
    return pairs


def test_a_value_with_line_breaks_and_escapes_cannot_forge_a_record(
    text_log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = text_log
    job_event(logger, "job.accepted", "job_abc", model=FORGED, prompt_tokens=9)
    written = out.getvalue()
    assert written.count("\n") == 1 and written.endswith("\n")
    for raw in ("\r", "\t", "\x1b", "\u2028"):
        assert raw not in written
    pairs = logfmt(written.rstrip("\n"))
    assert pairs == {
        "event": "job.accepted",
        "job": "job_abc",
        "model": FORGED,
        "prompt_tokens": "9",
    }


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("slow;delay=0.02", '"slow;delay=0.02"'),  # "=" would read as another key
        ("two words", '"two words"'),
        ("", '""'),
        ("café", '"caf\\u00e9"'),
        (True, "true"),
        (None, "null"),
        (1.5, "1.5"),
    ],
)
def test_plain_values_stay_bare_and_others_are_quoted(
    text_log: tuple[logging.Logger, io.StringIO], value: object, written: str
) -> None:
    logger, out = text_log
    job_event(logger, "job.started", "job_abc", model=value)
    assert out.getvalue().rstrip("\n").endswith(f" model={written}")


def test_any_text_record_stays_on_one_line(text_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = text_log
    logger.warning("upstream said: %s", "line one\nline two\r\x1b]0;title\x07")
    assert out.getvalue().count("\n") == 1
    assert "line one\\nline two\\r\\u001b]0;title\\u0007" in out.getvalue()


def test_a_traceback_still_follows_its_record(text_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = text_log
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("failed") and lines[1].startswith("Traceback")


def test_json_records_keep_the_exact_value() -> None:
    logger, out = capture(JsonFormatter())
    job_event(logger, "job.accepted", "job_abc", model=FORGED)
    assert out.getvalue().count("\n") == 1
    record = json.loads(out.getvalue())
    assert record["model"] == FORGED and record["event"] == "job.accepted"
