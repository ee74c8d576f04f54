"""The HTTP API and the live page of ``qa-headpose serve`` (Starlette app, uvicorn server). No TF.

Endpoints:
    ``POST /v1/poses``: an image (raw body or multipart field; JPEG, PNG or WebP) -> JSON
    with every face's box, score, yaw/pitch/roll, saturation flag and head axes, the
    model and the timings. ``GET /v1/health``, ``GET /v1/models``, ``GET /openapi.json``,
    and the live page: ``GET /`` and ``GET /static/{index.html,app.js,style.css}``.

Every error is a JSON body ``{"error": {"status", "code", "message"}}`` with a 4xx status
(a 500 only for a bug, without traceback). Requests are bounded before any decoding: the
body by ``Content-Length`` and by the bytes actually streamed, the pixels by the image
header, the number of requests in the server at once (uploading, queued or running) by
``max_pending`` (503 beyond it), and the upload time by ``body_timeout_s`` (408).

Inference runs in a `ThreadPoolExecutor` of ``threads`` workers, each with its own
`HeadPoseEstimator` (one-thread interpreters), so the event loop never blocks and no
estimator is ever used by two threads at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import queue
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qa_headpose import __version__
from qa_headpose.core.angles import ANGLE_LIMIT_DEG
from qa_headpose.core.errors import DataError
from qa_headpose.inference import registry
from qa_headpose.inference.draw import head_axes
from qa_headpose.inference.estimator import HeadPoseEstimator
from qa_headpose.inference.images import decode_image, image_header_size

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# The page loads nothing from elsewhere; the camera frames are blobs drawn on a canvas.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
IMAGE_FORMATS = ("jpeg", "png", "webp")


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """What ``qa-headpose serve`` serves and its limits.

    Fields:
        host: address to bind; 127.0.0.1 keeps the server on this machine.
        port: TCP port; 0 picks a free one.
        model: head-pose model name or .tflite path, passed to `HeadPoseEstimator`; None for the shipped one.
        threads: inference worker threads, each with its own estimator (one interpreter thread each).
        mirror: average each face's pose with its mirror image's (`HeadPoseEstimator`'s ``mirror``).
        max_body_bytes: largest request body, bytes (413 beyond it, before reading the rest).
        max_pixels: largest image, width x height from its header (413 beyond it, before decoding).
        max_pending: requests in the server at once, uploading, queued or running (503 beyond it).
        body_timeout_s: time allowed to upload one body, seconds (408 beyond it).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None
    threads: int = 2
    mirror: bool = False
    max_body_bytes: int = 20 * 2**20
    max_pixels: int = 2**25
    max_pending: int = 32
    body_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("threads", "max_body_bytes", "max_pixels", "max_pending"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1. Received: {name}={getattr(self, name)}")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in 0..65535. Received: port={self.port}")
        if not self.body_timeout_s > 0:
            raise ValueError(f"body_timeout_s must be > 0. Received: body_timeout_s={self.body_timeout_s}")


class ApiError(Exception):
    """An error answered as ``{"error": {"status", "code", "message"}}`` with its HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class EstimatorPool:
    """A fixed set of worker threads, each calling its own `HeadPoseEstimator`.

    Args:
        make_estimator: builds one estimator; called ``workers`` times here, so a bad model fails now.
        workers: number of threads (and estimators).
    """

    def __init__(self, make_estimator: Callable[[], HeadPoseEstimator], workers: int) -> None:
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self.estimators = [make_estimator() for _ in range(workers)]
        for estimator in self.estimators:
            estimator.predict_image(np.zeros((64, 64, 3), np.uint8))  # loads the detector, allocates tensors
            self._idle.put(estimator)
        self._local = threading.local()
        self.workers = workers
        # The executor starts at most `workers` threads; each takes one estimator for its lifetime.
        self._executor = ThreadPoolExecutor(workers, "qa-headpose-serve", initializer=self._take_estimator)

    def _take_estimator(self) -> None:
        self._local.estimator = self._idle.get_nowait()

    def _call(self, fn: Callable[..., Any], args: tuple) -> Any:
        return fn(self._local.estimator, *args)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Runs ``fn(estimator, *args)`` on a worker; returns its `Future`."""
        return self._executor.submit(self._call, fn, args)

    def shutdown(self) -> None:
        """Stops the workers once their current calls end; queued calls are cancelled."""
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclasses.dataclass
class _State:
    cfg: ServeConfig
    pool: EstimatorPool
    model_info: dict[str, Any]
    static: dict[str, bytes]
    in_flight: int = 0
    served: int = 0


def _sha256_prefix(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return None


def image_format(payload: bytes) -> str | None:
    """The format ("jpeg", "png" or "webp") from the first bytes of an encoded image; None for anything else."""
    if payload[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if payload[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if payload[:4] == b"RIFF" and payload[8:12] == b"WEBP":
        return "webp"
    return None


def face_to_json(face: Any) -> dict[str, Any]:
    """One `detect.FaceResult` as the API's JSON object (degrees; box in pixels; axes as `draw.head_axes`)."""
    yaw, pitch, roll = (float(v) for v in face.pose)
    return {
        "face": int(face.face),
        "box": [float(v) for v in face.box],
        "score": float(face.score),
        "yaw": yaw,
        "pitch": pitch,
        "roll": roll,
        "saturated": max(abs(yaw), abs(pitch), abs(roll)) >= ANGLE_LIMIT_DEG,
        "axes": [[float(v) for v in row] for row in head_axes((yaw, pitch, roll))],
    }


def _predict(estimator: HeadPoseEstimator, payload: bytes, max_pixels: int, submitted: float) -> dict[str, Any]:
    """Worker side of ``POST /v1/poses``: decode and predict, with the timings."""
    start = time.perf_counter()
    try:
        image = decode_image(payload, "the request body", max_pixels)
    except DataError as exc:
        return {"error": ApiError(400, "bad_image", str(exc))}
    except MemoryError:
        return {"error": ApiError(413, "image_too_large", "the image is too large to decode")}
    decoded = time.perf_counter()
    faces = estimator.predict_image(image)
    done = time.perf_counter()
    return {
        "faces": [face_to_json(f) for f in faces],
        "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        "queue_ms": (start - submitted) * 1e3,
        "decode_ms": (decoded - start) * 1e3,
        "inference_ms": (done - decoded) * 1e3,
    }


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
        loop.call_soon_threadsafe(fn)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as its declared or streamed size passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_request", f"invalid Content-Length: {declared!r}")
        if int(declared) > limit:
            raise ApiError(413, "body_too_large", f"the body is {declared} bytes; at most {limit} are accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"the body is over {limit} bytes, the most accepted")
        chunks.append(chunk)
    return b"".join(chunks)


async def _image_from_multipart(request: Request, body: bytes) -> bytes:
    async def once():
        yield body

    parser = MultiPartParser(request.headers, once(), max_files=1, max_fields=16, max_part_size=2**16)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, "bad_multipart", f"cannot parse the multipart body: {exc.message}") from None
    try:
        for _, value in form.multi_items():
            if isinstance(value, UploadFile):
                return await value.read()
    finally:
        await form.close()
    raise ApiError(
        400, "no_image", "the multipart body has no file field; send the image as a file (e.g. -F image=@face.jpg)"
    )


async def poses(request: Request) -> Response:
    """``POST /v1/poses``."""
    state: _State = request.app.state.serve
    cfg = state.cfg
    start = time.perf_counter()
    if state.in_flight >= cfg.max_pending:
        raise ApiError(503, "busy", f"{cfg.max_pending} requests are already in progress; retry", {"Retry-After": "1"})
    state.in_flight += 1
    loop = asyncio.get_running_loop()
    handed_over = False

    def release(_future: Any = None) -> None:
        state.in_flight -= 1

    try:
        try:
            body = await asyncio.wait_for(_read_body(request, cfg.max_body_bytes), cfg.body_timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(408, "body_timeout", f"the body took over {cfg.body_timeout_s:g} s to arrive") from None
        except ClientDisconnect:
            raise ApiError(
                400, "client_disconnected", "the client closed the connection before the body ended"
            ) from None
        if request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            body = await _image_from_multipart(request, body)
        if not body:
            raise ApiError(400, "empty_body", "the body is empty; send a JPEG, PNG or WebP image")
        kind = image_format(body)
        if kind is None:
            raise ApiError(415, "unsupported_media_type", "the body is not a JPEG, PNG or WebP image")
        size = image_header_size(body)
        if size is None or min(size) < 1:
            raise ApiError(400, "bad_image", f"cannot read the image size from its {kind.upper()} header")
        if size[0] * size[1] > cfg.max_pixels:
            raise ApiError(
                413, "image_too_large", f"the image is {size[0]}x{size[1]} pixels; at most {cfg.max_pixels} are decoded"
            )
        read = time.perf_counter()
        future = state.pool.submit(_predict, body, cfg.max_pixels, read)
        # The slot is freed when the worker is done, not when a client gives up waiting.
        future.add_done_callback(lambda _: _call_soon(loop, release))
        handed_over = True
        result = await asyncio.wrap_future(future)
    finally:
        if not handed_over:
            release()
    if "error" in result:
        raise result["error"]
    state.served += 1
    result["image"]["format"] = kind
    timings = {
        "read": (read - start) * 1e3,
        "queue": result.pop("queue_ms"),
        "decode": result.pop("decode_ms"),
        "inference": result.pop("inference_ms"),
        "total": (time.perf_counter() - start) * 1e3,
    }
    result["model"] = {k: state.model_info[k] for k in ("name", "input_size", "sha256")}
    result["timings_ms"] = {k: round(v, 3) for k, v in timings.items()}
    return JSONResponse(result)


async def health(request: Request) -> Response:
    """``GET /v1/health``."""
    state: _State = request.app.state.serve
    return JSONResponse(
        {
            "status": "ok",
            "version": __version__,
            "model": state.model_info["name"],
            "workers": state.pool.workers,
            "in_flight": state.in_flight,
            "max_pending": state.cfg.max_pending,
            "served": state.served,
        }
    )


async def models(request: Request) -> Response:
    """``GET /v1/models``."""
    state: _State = request.app.state.serve
    return JSONResponse({"version": __version__, "models": [state.model_info]})


async def openapi(request: Request) -> Response:
    """``GET /openapi.json``: the API described as OpenAPI 3.1."""
    return JSONResponse(OPENAPI)


def _static_response(state: _State, name: str) -> Response:
    if name not in STATIC_FILES:
        raise ApiError(404, "not_found", "no such file")
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Content-Security-Policy": PAGE_CSP}
    return Response(state.static[name], media_type=STATIC_FILES[name], headers=headers)


async def page(request: Request) -> Response:
    """``GET /``: the live page."""
    return _static_response(request.app.state.serve, "index.html")


async def static(request: Request) -> Response:
    """``GET /static/{name}``: the page's files (a fixed list; nothing else on disk is reachable)."""
    return _static_response(request.app.state.serve, request.path_params["name"])


def _error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    headers = dict(headers or {})
    if status in (408, 413):  # the rest of the body is not read: the connection cannot be reused
        headers["Connection"] = "close"
    return JSONResponse({"error": {"status": status, "code": code, "message": message}}, status, headers)


async def _on_api_error(request: Request, exc: ApiError) -> Response:
    return _error_response(exc.status, exc.code, exc.message, exc.headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


async def _on_http_error(request: Request, exc: HTTPException) -> Response:
    path = request.url.path[:200]
    message = {404: f"no such path: {path}", 405: f"{request.method} is not allowed on {path}"}
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return _error_response(exc.status_code, code, message.get(exc.status_code, str(exc.detail)), exc.headers)


async def _on_bug(request: Request, exc: Exception) -> Response:
    logger.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_response(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")


def create_app(cfg: ServeConfig | None = None) -> Starlette:
    """The ASGI app of ``qa-headpose serve``; loads ``cfg.threads`` estimators now.

    Args:
        cfg: the model and limits (`ServeConfig`); None for the defaults.

    Returns:
        A Starlette app (run it with `run_server`, uvicorn or any ASGI server).

    Raises:
        runtime.ModelError: if the model cannot be loaded (missing, corrupt, not head pose).
        OSError: if the page's files are missing from the install.
    """
    cfg = cfg or ServeConfig()
    pool = EstimatorPool(lambda: HeadPoseEstimator(cfg.model, num_threads=1, mirror=cfg.mirror), cfg.threads)
    first = pool.estimators[0]
    model_path = Path(first.model_path)
    model_info = {
        "name": cfg.model or registry.DEFAULT_MODEL_NAME,
        "file": model_path.name,
        "input_size": int(first.input_size),
        "mirror": cfg.mirror,
        "sha256": _sha256_prefix(model_path),
        "version": __version__,
        "detector": "short",
        "default": True,
    }
    state = _State(cfg, pool, model_info, {name: (STATIC_DIR / name).read_bytes() for name in STATIC_FILES})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        pool.shutdown()

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/v1/poses", poses, methods=["POST"]),
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    handlers = {ApiError: _on_api_error, HTTPException: _on_http_error, Exception: _on_bug}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.serve = state
    return app


def server_url(sock: socket.socket) -> str:
    """``http://host:port/`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run_server(cfg: ServeConfig | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """Serves `create_app` with uvicorn until interrupted.

    Args:
        cfg: address, model and limits (`ServeConfig`); None for the defaults.
        on_ready: called with the server's URL once it listens (the port is the real one when ``cfg.port`` is 0).

    Raises:
        runtime.ModelError: if the model cannot be loaded.
        OSError: if the address cannot be bound (port in use, unknown host).
    """
    cfg = cfg or ServeConfig()
    app = create_app(cfg)
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    sock = socket.create_server((cfg.host, cfg.port), family=family, backlog=256)
    # Accepted connections inherit it: without it a keep-alive client waits ~40 ms per answer (Nagle against
    # its delayed ACK when the headers and the body go out as two writes).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    config = uvicorn.Config(app, log_level="warning", access_log=False, ws="none", lifespan="on", server_header=False)
    if on_ready is not None:
        on_ready(server_url(sock))  # connections wait in the listen backlog until uvicorn accepts
    uvicorn.Server(config).run(sockets=[sock])


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
_ERRORS = {
    str(s): {"description": d, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
    for s, d in (
        (400, "empty, truncated or undecodable image, bad multipart"),
        (408, "the body took too long to arrive"),
        (413, "body over max_body_bytes, or image over max_pixels (refused before decoding)"),
        (415, "not a JPEG, PNG or WebP image"),
        (503, "max_pending requests already in progress; retry after Retry-After seconds"),
    )
}
_FACE_SCHEMA = {
    "type": "object",
    "properties": {
        "face": {"type": "integer", "description": "index by detector score, best first"},
        "box": {"type": "array", "items": {"type": "number"}, "description": "x_min, y_min, x_max, y_max, pixels"},
        "score": {"type": "number", "description": "detector confidence, 0-1"},
        "yaw": {"type": "number", "description": "degrees"},
        "pitch": {"type": "number", "description": "degrees"},
        "roll": {"type": "number", "description": "degrees"},
        "saturated": {
            "type": "boolean",
            "description": "an angle at or beyond +-99 degrees (edge of the model's range)",
        },
        "axes": {"description": "head x, y, z axes (rows) in the camera frame: x right, y up, z to the camera"},
    },
}
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "qa-headpose",
        "version": __version__,
        "description": "Head pose (yaw, pitch, roll) of every face.",
    },
    "paths": {
        "/v1/poses": {
            "post": {
                "summary": "Head pose of every face in an image",
                "requestBody": {
                    "required": True,
                    "content": {
                        **{f"image/{k}": {"schema": {"type": "string", "format": "binary"}} for k in IMAGE_FORMATS},
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {"image": {"type": "string", "format": "binary"}},
                            }
                        },
                    },
                },
                "responses": {
                    "200": {
                        "description": "the faces, best detector score first",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "faces": {"type": "array", "items": _FACE_SCHEMA},
                                        "image": {"type": "object"},
                                        "model": {"type": "object"},
                                        "timings_ms": {"type": "object"},
                                    },
                                }
                            }
                        },
                    },
                    **_ERRORS,
                },
            }
        },
        "/v1/health": {"get": {"summary": "Liveness and load", "responses": {"200": {"description": "ok"}}}},
        "/v1/models": {"get": {"summary": "The model served", "responses": {"200": {"description": "models"}}}},
    },
}
