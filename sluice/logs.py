"""Logging set-up shared by the gateway and the worker: one line per record, to stderr."""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


def configure_logging() -> None:
    level = os.environ.get("SLUICE_LOG_LEVEL", "INFO").upper()
    root = logging.getLogger()
    if not any(getattr(h, "_sluice", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._sluice = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    logging.getLogger("sluice").setLevel(level)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
