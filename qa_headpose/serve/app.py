"""The public face of ``qa-headpose serve``: `ServeConfig`, `create_app` and `run_server`, from their modules.

Endpoints: ``POST /v1/poses`` (an image as the raw body or the multipart file field ``image``; JPEG, PNG or
WebP; EXIF orientation applied) -> every face's box, score, yaw/pitch/roll, saturation flag and head axes, the
model and the timings; ``GET /v1/health``, ``GET /v1/models``, ``GET /openapi.json``; the live page at ``GET /``
and ``GET /static/{index.html,app.js,style.css}``. Every error is ``{"error": {"status", "code", "message"}}``.

The package, one concern per module: config (`ServeConfig`, every default and limit), errors (the error codes),
limits (uploads, bodies, multipart, image checks), schema (the face JSON and the OpenAPI document), pool (the
worker threads), routes (the Starlette app), server (uvicorn, the HTTP layer's limits, logging). What the server
guarantees against hostile clients is written down in docs/serve.md.
"""

from __future__ import annotations

from qa_headpose.serve.config import ServeConfig
from qa_headpose.serve.errors import ApiError
from qa_headpose.serve.limits import image_format
from qa_headpose.serve.routes import create_app
from qa_headpose.serve.schema import face_to_json, openapi_document
from qa_headpose.serve.server import run_server, server_url

__all__ = [
    "ApiError",
    "ServeConfig",
    "create_app",
    "face_to_json",
    "image_format",
    "openapi_document",
    "run_server",
    "server_url",
]
