"""Logging shared by the gateway and the worker: one line per record, to stderr.

Job lifecycle records (``job_event``) are structured: ``event=job.started job=job_… k=v``
in the text format, or one JSON object per line with ``SLUICE_LOG_FORMAT=json``, each
carrying the job id for correlation. They never carry message content or keys.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

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


def configure_logging() -> None:
    level = os.environ.get("SLUICE_LOG_LEVEL", "INFO").upper()
    root = logging.getLogger()
    if not any(getattr(h, "_sluice", False) for h in root.handlers):
        handler = logging.StreamHandler()
        json_format = os.environ.get("SLUICE_LOG_FORMAT", "text").lower() == "json"
        handler.setFormatter(JsonFormatter() if json_format else logging.Formatter(FORMAT))
        handler._sluice = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    logging.getLogger("sluice").setLevel(level)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return json.dumps(text) if (" " in text or '"' in text or not text) else text


def job_event(
    logger: logging.Logger, event: str, job_id: str, level: int = logging.INFO, **fields: Any
) -> None:
    """One structured lifecycle record: ``event=<event> job=<id> key=value …``."""
    data = {"event": event, "job": job_id, **fields}
    message = " ".join(f"{key}={_text(value)}" for key, value in data.items())
    logger.log(level, message, extra={"fields": data})
