"""The API's JSON shapes and its OpenAPI 3.1 document, made from the same definitions.

`FACE_FIELDS` builds both a face's JSON (`face_to_json`) and its schema; `ERRORS` (errors.py) gives every
route's error answers; the routes, methods and media types are listed once here and the router is built
from `ROUTES` (routes.py), so the document cannot describe a route that is not served or miss one that is.
"""

from __future__ import annotations

from typing import Any, Callable

from qa_headpose import __version__
from qa_headpose.inference.draw import head_axes
from qa_headpose.serve.errors import ERRORS
from qa_headpose.serve.limits import IMAGE_FORMATS

_NUMBER = {"type": "number"}
# The live page's files, the only ones under /static/, with their media types.
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


def _floats(values) -> list[float]:
    return [float(v) for v in values]


# name: (JSON schema, value from a `FaceResult`)
FACE_FIELDS: dict[str, tuple[dict[str, Any], Callable[[Any], Any]]] = {
    "face": ({"type": "integer", "description": "index by detector score, best first"}, lambda f: int(f.face)),
    "box": (
        {"type": "array", "items": _NUMBER, "minItems": 4, "maxItems": 4, "description": "x0, y0, x1, y1, pixels"},
        lambda f: _floats(f.box),
    ),
    "score": ({"type": "number", "description": "detector confidence, 0-1"}, lambda f: float(f.score)),
    "yaw": ({"type": "number", "description": "degrees"}, lambda f: float(f.pose.yaw)),
    "pitch": ({"type": "number", "description": "degrees"}, lambda f: float(f.pose.pitch)),
    "roll": ({"type": "number", "description": "degrees"}, lambda f: float(f.pose.roll)),
    "saturated": (
        {"type": "boolean", "description": "the model's output lay at an end of its range (HeadPose.saturated)"},
        lambda f: bool(f.pose.saturated),
    ),
    "axes": (
        {
            "type": "array",
            "items": {"type": "array", "items": _NUMBER, "minItems": 3, "maxItems": 3},
            "minItems": 3,
            "maxItems": 3,
            "description": "head x, y, z axes (rows) in the camera frame: x right, y up, z to the camera",
        },
        lambda f: [_floats(row) for row in head_axes(tuple(float(v) for v in f.pose))],
    ),
}


def face_to_json(face: Any) -> dict[str, Any]:
    """One `FaceResult` as the API's JSON object (degrees; box in pixels; axes as `draw.head_axes`)."""
    return {name: value(face) for name, (_, value) in FACE_FIELDS.items()}


def _object(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), **extra}


FACE_SCHEMA = _object({name: schema for name, (schema, _) in FACE_FIELDS.items()})
ERROR_SCHEMA = _object(
    {"error": _object({"status": {"type": "integer"}, "code": {"enum": list(ERRORS)}, "message": {"type": "string"}})}
)
POSES_SCHEMA = _object(
    {
        "faces": {"type": "array", "items": FACE_SCHEMA},
        "image": _object(
            {"width": {"type": "integer"}, "height": {"type": "integer"}, "format": {"enum": list(IMAGE_FORMATS)}}
        ),
        "model": _object({"name": {"type": "string"}, "input_size": {"type": "integer"}, "sha256": {}}),
        "timings_ms": _object({k: _NUMBER for k in ("read", "queue", "decode", "inference", "total")}),
    }
)
HEALTH_SCHEMA = _object(
    {
        "status": {"const": "ok"},
        "version": {"type": "string"},
        "model": {"type": "string"},
        **{k: {"type": "integer"} for k in ("workers", "in_flight", "max_pending", "uploading", "max_uploads")},
        **{k: {"type": "integer"} for k in ("held_bytes", "max_buffered_bytes", "served")},
    }
)
MODEL_SCHEMA = _object(
    {
        "name": {"type": "string"},
        "file": {"type": "string"},
        "input_size": {"type": "integer"},
        "mirror": {"type": "boolean"},
        "sha256": {"type": ["string", "null"]},
        "version": {"type": "string"},
        "detector": {"type": "string"},
        "default": {"type": "boolean"},
    }
)
MODELS_SCHEMA = _object({"version": {"type": "string"}, "models": {"type": "array", "items": MODEL_SCHEMA}})
_BINARY = {"type": "string", "format": "binary"}
POSES_BODY = {
    "required": True,
    "content": {
        **{f"image/{kind}": {"schema": _BINARY} for kind in IMAGE_FORMATS},
        "multipart/form-data": {
            "schema": _object({"image": _BINARY}),
            "encoding": {"image": {"contentType": ", ".join(f"image/{kind}" for kind in IMAGE_FORMATS)}},
        },
    },
}

# path: {method: (summary, 200 description, 200 content, error codes beyond those every route may answer)}
ROUTES: dict[str, dict[str, tuple[str, str, dict[str, Any], tuple[str, ...]]]] = {
    "/": {"get": ("The live page", "the page (HTML)", {"text/html": {}}, ())},
    "/static/{name}": {
        "get": (
            "The live page's files: index.html, app.js, style.css",
            "the file",
            {media.split(";")[0]: {} for media in STATIC_FILES.values()},
            (),
        )
    },
    "/v1/poses": {
        "post": (
            "Head pose of every face in an image",
            "the faces, best detector score first",
            {"application/json": {"schema": POSES_SCHEMA}},
            (
                "empty_body",
                "bad_image",
                "bad_multipart",
                "no_image",
                "client_disconnected",
                "body_timeout",
                "body_too_large",
                "image_too_large",
                "unsupported_media_type",
                "busy",
            ),
        )
    },
    "/v1/health": {"get": ("Liveness and load", "ok", {"application/json": {"schema": HEALTH_SCHEMA}}, ())},
    "/v1/models": {"get": ("The model served", "models", {"application/json": {"schema": MODELS_SCHEMA}}, ())},
    "/openapi.json": {
        "get": ("This document", "OpenAPI 3.1", {"application/json": {"schema": {"type": "object"}}}, ())
    },
}
# Errors any route may answer: from the HTTP layer (bad request, timeouts, headers) and the router.
COMMON_ERRORS = ("bad_request", "not_found", "method_not_allowed", "request_timeout", "headers_too_large")


def _responses(ok: str, content: dict[str, Any], codes: tuple[str, ...]) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": ok, "content": content}}
    for code in (*codes, *COMMON_ERRORS, "internal_error"):
        status, meaning = ERRORS[code]
        entry = responses.setdefault(
            str(status), {"description": "", "content": {"application/json": {"schema": ERROR_SCHEMA}}}
        )
        entry["description"] = "; ".join(filter(None, (entry["description"], f"{code}: {meaning}")))
    if "503" in responses:
        responses["503"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    return responses


def _operation(path: str, summary: str, ok: str, content: dict[str, Any], codes: tuple[str, ...]) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": _responses(ok, content, codes)}
    if "{name}" in path:
        operation["parameters"] = [
            {"name": "name", "in": "path", "required": True, "schema": {"enum": list(STATIC_FILES)}}
        ]
    if path == "/v1/poses":
        operation["requestBody"] = POSES_BODY
    return operation


def openapi_document() -> dict[str, Any]:
    """The API as an OpenAPI 3.1 document: every route, its answers and its errors."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "qa-headpose",
            "version": __version__,
            "description": "Head pose (yaw, pitch, roll, degrees) of every face in an image. Every error is "
            '{"error": {"status", "code", "message"}}.',
        },
        "paths": {
            path: {m: _operation(path, *spec) for m, spec in methods.items()} for path, methods in ROUTES.items()
        },
    }
