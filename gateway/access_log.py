"""gunicorn's access log, without the secrets that some URLs carry.

``events_url`` holds a signed ``token`` (valid for ``SLUICE_MAX_JOB_AGE``) so that a plain
``EventSource``, which cannot send headers, can open a job's stream. The access log writes
every request line and query string, so without this the log would hold a working
credential for every stream opened. Parameters named ``token`` (however the name is
percent-encoded: Werkzeug decodes names too) keep their name and lose their value.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

from gunicorn.glogging import Logger

SECRET_PARAMETERS = frozenset({"token"})
REDACTED = "[redacted]"
_QUERY = re.compile(r"(?<=\?)[^ #]*")  # the query string inside a request line


def redact_query(query: str) -> str:
    """``token=abc&after=3`` -> ``token=[redacted]&after=3``; other parameters untouched."""
    parts = re.split(r"([&;])", query)
    for i in range(0, len(parts), 2):
        name, equals, _value = parts[i].partition("=")
        if equals and unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
            parts[i] = f"{name}={REDACTED}"
    return "".join(parts)


def redact_url(text: str) -> str:
    """The same, for a request line or a URL (its query string, after ``?``)."""
    return _QUERY.sub(lambda m: redact_query(m.group()), text, count=1)


class RedactingLogger(Logger):
    """gunicorn's logger with secret query parameters redacted in every access atom that
    can hold a URL: the request line (``%(r)s``), the query (``%(q)s``), the referer; and
    in its error log's arguments, where gunicorn names the request it could not handle
    (``Error handling request <method> <uri>``, the URI with its query string) or quotes a
    request line it could not parse (``Invalid request from ip=…: …``)."""

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().error(*_redacted((msg, *args)), **kwargs)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().warning(*_redacted((msg, *args)), **kwargs)

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        super().exception(*_redacted((msg, *args)), **kwargs)

    def atoms(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any
    ) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        if isinstance(atoms.get("q"), str):
            atoms["q"] = redact_query(atoms["q"])
        for key in ("r", "f", "{referer}i"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact_url(atoms[key])
        return atoms


def _redacted(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(redact_url(a) if isinstance(a, str) and "?" in a else a for a in args)
