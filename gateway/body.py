"""Reading a JSON request body strictly: right content type, valid UTF-8, a JSON object.

Standard JSON only: ``NaN`` and ``Infinity`` (which Python's parser accepts) are refused,
and a body nested deeper than the parser can follow is a 400, not a crash.
"""

from __future__ import annotations

import json
from typing import Any

from flask import request

from sluice.errors import InvalidRequest, UnsupportedMediaType


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)


def json_object() -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json")
    raw = request.get_data(cache=False)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        body = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc.msg} at {exc.pos}") from None
    except RecursionError:
        raise InvalidRequest("the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body
