"""Logging shared by the gateway and the worker: one line per record, to stderr.

Job lifecycle records (``job_event``) are structured: ``event=job.started job=job_… k=v``
in the text format, or one JSON object per line with ``SLUICE_LOG_FORMAT=json``, each
carrying the job id for correlation. They never carry message content or keys.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, TextIO

from sluice.settings import read_env

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            **getattr(record, "fields", {}),
        }
        entry.setdefault("msg", record.getMessage())
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class TextFormatter(logging.Formatter):
    """The text format, one line per record whatever a message contains: control
    characters (CR, LF, ESC…) are written as escapes; a traceback follows as its own
    indented lines, as usual."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        return _CONTROL.sub(lambda m: json.dumps(m.group(), ensure_ascii=True)[1:-1], line)


class _SluiceHandler(logging.StreamHandler[TextIO]):
    """The handler ``configure_logging`` installs once per process."""


def configure_logging() -> None:
    level = str(read_env("SLUICE_LOG_LEVEL")).upper()
    root = logging.getLogger()
    if not any(isinstance(h, _SluiceHandler) for h in root.handlers):
        handler = _SluiceHandler()
        json_format = str(read_env("SLUICE_LOG_FORMAT")).lower() == "json"
        handler.setFormatter(JsonFormatter() if json_format else TextFormatter(FORMAT))
        root.addHandler(handler)
    logging.getLogger("sluice").setLevel(level)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)


# a value written bare in logfmt: nothing a reader could take for a separator, a quote,
# another key, a line break or a terminal control sequence
_BARE = re.compile(r"[A-Za-z0-9_.:/@+,;-]+")


def _text(value: Any) -> str:
    """A logfmt value: bare when it is plainly one token, else a JSON string with every
    control and non-ASCII character escaped, so no value (a model name a client chose,
    say) can end the line, forge another record or move a terminal's cursor."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=True)


def job_event(
    logger: logging.Logger, event: str, job_id: str, level: int = logging.INFO, **fields: Any
) -> None:
    """One structured lifecycle record: ``event=<event> job=<id> key=value …``."""
    data = {"event": event, "job": job_id, **fields}
    message = " ".join(f"{key}={_text(value)}" for key, value in data.items())
    logger.log(level, message, extra={"fields": data})
