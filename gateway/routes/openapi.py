"""``GET /openapi.json``: the API described as OpenAPI 3.1, from the pydantic models.

The request schemas are the very models the routes validate with, so the document cannot
drift from what the gateway accepts. The test suite fuzzes the gateway from it
(schemathesis).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from gateway.request import ChatCompletionRequest, JobRequest

bp = Blueprint("openapi", __name__)


class KeyVerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: str


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {},
                "status": {"type": "integer"},
            },
        }
    },
}
JOB = {
    "type": "object",
    "required": ["id", "status", "model", "url", "events_url"],
    "properties": {
        "id": {"type": "string"},
        "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "model": {"type": "string"},
        "url": {"type": "string"},
        "events_url": {"type": "string"},
        "prompt_tokens": {"type": "integer"},
        "prompt_tokens_estimated": {"type": "boolean"},
        "truncated_messages": {"type": "integer"},
        "choices": {"type": "array"},
        "usage": {},
        "error": {},
        "last_event_id": {"type": "integer"},
    },
}
JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
USER_KEY = {
    "name": "X-Upstream-Api-Key",
    "in": "header",
    "required": False,
    "description": "the caller's own upstream key, for this request only",
    "schema": {"type": "string"},
}

SNAPSHOT_PARAM = {
    "name": "snapshot",
    "in": "query",
    "required": False,
    "description": (
        "1 or true: with no cursor, start with one `snapshot` event (the answer so far, "
        "under the id of the last event it covers), then the events after it; ignored "
        "with a cursor. 0, false or absent: every event."
    ),
    "schema": {"type": "string", "enum": ["0", "1", "true", "false"]},
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "error", **_json(_ref("Error"))} for s in statuses}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    from gateway.routes import PROJECTIONS  # (that package imports this module)

    models: list[type[BaseModel]] = [JobRequest, ChatCompletionRequest, KeyVerifyRequest]
    models += [model for module in PROJECTIONS for model in module.OPENAPI_MODELS]
    _, top = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    schemas = {**top["$defs"], "Error": ERROR, "Job": JOB}
    body = {"required": True}
    paths = {
        "/v1/jobs": {
            "post": {
                "summary": "Start a completion job",
                "parameters": [
                    USER_KEY,
                    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
                ],
                "requestBody": {**body, **_json(_ref("JobRequest"))},
                "responses": {
                    "200": {
                        "description": (
                            "with stream: true, the job's event stream (as from its "
                            "events_url, which resumes it); headers X-Sluice-Job-Id, "
                            "Location and X-Sluice-Events-Url"
                        ),
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "202": {"description": "accepted", **_json(_ref("Job"))},
                    **_errors(400, 413, 415, 429, 503),
                },
            }
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "summary": "Poll a job",
                "parameters": [JOB_ID],
                "responses": {
                    "200": {"description": "the job", **_json(_ref("Job"))},
                    **_errors(404),
                },
            }
        },
        "/v1/jobs/{job_id}/events": {
            "get": {
                "summary": "The job's events as Server-Sent Events, resumable",
                "parameters": [
                    JOB_ID,
                    {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    SNAPSHOT_PARAM,
                    {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "the event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "204": {"description": "the client already has the terminal event"},
                    **_errors(400, 404, 410),
                },
            }
        },
        "/v1/jobs/{job_id}/cancel": {
            "post": {
                "summary": "Cancel a job (idempotent)",
                "parameters": [JOB_ID],
                "responses": {
                    "200": {"description": "the job", **_json(_ref("Job"))},
                    **_errors(404),
                },
            }
        },
        "/v1/chat/completions": {
            "post": {
                "summary": "OpenAI-compatible chat completions, through the queue",
                "parameters": [USER_KEY],
                "requestBody": {**body, **_json(_ref("ChatCompletionRequest"))},
                "responses": {
                    "200": {
                        "description": "a chat.completion, or chunks when streaming",
                        "content": {
                            "application/json": {"schema": {"type": "object"}},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401, 403, 404, 409, 413, 415, 429, 502, 503, 504),
                },
            }
        },
        "/v1/models": {
            "get": {
                "summary": "The upstream's models with their context windows",
                "parameters": [USER_KEY],
                "responses": {
                    "200": {"description": "model list", **_json({"type": "object"})},
                    **_errors(400, 401, 403, 429, 502),
                },
            }
        },
        "/v1/keys/verify": {
            "post": {
                "summary": "Is this upstream key valid?",
                "requestBody": {**body, **_json(_ref("KeyVerifyRequest"))},
                "responses": {
                    "200": {"description": "validity", **_json({"type": "object"})},
                    **_errors(400, 413, 415, 502),
                },
            }
        },
        **{path: item for module in PROJECTIONS for path, item in module.OPENAPI_PATHS.items()},
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "up"}}}},
        "/readyz": {
            "get": {
                "summary": "Readiness",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not"}},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Sluice", "version": "1.0.0",
                 "description": "Queue-backed, resumable streaming of chat completions."},
        "paths": paths,
        "components": {"schemas": schemas},
    }  # fmt: skip


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(openapi_document())
