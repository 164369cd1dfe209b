"""Stub: filled in by issue #16's work."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from pydantic import BaseModel

bp = Blueprint("ai_chat", __name__)
OPENAPI_PATHS: dict[str, Any] = {}
OPENAPI_MODELS: list[type[BaseModel]] = []
