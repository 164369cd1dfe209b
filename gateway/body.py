"""Reading a JSON request body strictly: right content type, valid UTF-8, a JSON object."""

from __future__ import annotations

import json
from typing import Any

from flask import request

from sluice.errors import InvalidRequest, UnsupportedMediaType


def json_object() -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("send the body as JSON with Content-Type: application/json")
    raw = request.get_data(cache=False)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the body is not valid UTF-8 (byte {exc.start})") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc.msg} at {exc.pos}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body
