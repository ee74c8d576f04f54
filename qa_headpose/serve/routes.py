"""The routes of ``qa-headpose serve`` and the Starlette app that serves them (`create_app`).

A ``POST /v1/poses`` passes, in order: the queue bound (`ServeConfig.max_pending`), the declared size, an upload
slot and its bytes (`limits.UploadGate`), the body within its deadline, the multipart envelope, the image's kind
and size from its header; only then is it queued for a worker (`pool.predict_payload`), which decodes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from qa_headpose import __version__
from qa_headpose.core.atomic import sha256_bytes
from qa_headpose.inference import registry
from qa_headpose.inference.estimator import HeadPoseEstimator
from qa_headpose.serve.config import ServeConfig
from qa_headpose.serve.errors import ApiError, error_body
from qa_headpose.serve.limits import UploadGate, check_image, declared_length, image_from_multipart, read_body
from qa_headpose.serve.pool import EstimatorPool, predict_payload
from qa_headpose.serve.schema import ROUTES, STATIC_FILES, openapi_document

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
# The page loads nothing from elsewhere; the camera frames are blobs drawn on a canvas.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclasses.dataclass
class _State:
    cfg: ServeConfig
    pool: EstimatorPool
    gate: UploadGate
    model_info: dict[str, Any]
    static: dict[str, bytes]
    openapi: bytes
    pending: int = 0  # bodies handed to the workers, queued or running
    served: int = 0


def _sha256_prefix(path: Path) -> str | None:
    try:
        return sha256_bytes(path.read_bytes())[:12]
    except OSError:
        return None


def _busy(what: str) -> ApiError:
    return ApiError("busy", f"{what}; retry", {"Retry-After": "1"})


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
        loop.call_soon_threadsafe(fn)


async def poses(request: Request) -> Response:
    """``POST /v1/poses``."""
    state: _State = request.app.state.serve
    cfg = state.cfg
    start = time.perf_counter()
    if state.pending >= cfg.max_pending:
        raise _busy(f"{cfg.max_pending} requests are already queued or running")
    declared = declared_length(request.headers)
    if declared is not None and declared > cfg.max_body_bytes:
        raise ApiError("body_too_large", f"the body is {declared} bytes; at most {cfg.max_body_bytes} are accepted")
    upload = state.gate.admit(declared or 0)
    loop = asyncio.get_running_loop()
    handed_over = False

    def done() -> None:
        state.pending -= 1
        state.gate.release(upload)

    try:
        try:
            body = await read_body(request.stream(), upload, state.gate, cfg)
        except ClientDisconnect:
            raise ApiError("client_disconnected", "the client closed the connection before the body ended") from None
        finally:
            state.gate.finish(upload)
        content_type = request.headers.get("content-type", "")
        if content_type.lower().startswith("multipart/form-data"):
            body = image_from_multipart(content_type, body)
        kind = check_image(body, cfg.max_pixels)
        if state.pending >= cfg.max_pending:
            raise _busy(f"{cfg.max_pending} requests are already queued or running")
        state.pending += 1
        read = time.perf_counter()
        future = state.pool.submit(predict_payload, body, cfg.max_pixels, read)
        del body
        # The slot and the bytes are freed when the worker is done, not when a client gives up waiting.
        future.add_done_callback(lambda _: _call_soon(loop, done))
        handed_over = True
        result = await asyncio.wrap_future(future)
    finally:
        if not handed_over:
            state.gate.release(upload)
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
    cfg = state.cfg
    return JSONResponse(
        {
            "status": "ok",
            "version": __version__,
            "model": state.model_info["name"],
            "workers": state.pool.workers,
            "in_flight": state.pending,
            "max_pending": cfg.max_pending,
            "uploading": len(state.gate.uploads),
            "max_uploads": cfg.max_uploads,
            "held_bytes": state.gate.held_bytes,
            "max_buffered_bytes": cfg.max_buffered_bytes,
            "served": state.served,
        }
    )


async def models(request: Request) -> Response:
    """``GET /v1/models``."""
    state: _State = request.app.state.serve
    return JSONResponse({"version": __version__, "models": [state.model_info]})


async def openapi(request: Request) -> Response:
    """``GET /openapi.json``: the API described as OpenAPI 3.1 (`schema.openapi_document`)."""
    return Response(request.app.state.serve.openapi, media_type="application/json")


def _static_response(state: _State, name: str) -> Response:
    if name not in STATIC_FILES:
        raise ApiError("not_found", "no such file")
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Content-Security-Policy": PAGE_CSP}
    return Response(state.static[name], media_type=STATIC_FILES[name], headers=headers)


async def page(request: Request) -> Response:
    """``GET /``: the live page."""
    return _static_response(request.app.state.serve, "index.html")


async def static(request: Request) -> Response:
    """``GET /static/{name}``: the page's files (a fixed list; nothing else on disk is reachable)."""
    return _static_response(request.app.state.serve, request.path_params["name"])


# One handler per path of `schema.ROUTES` (the router is built from it, so the document lists what is served).
HANDLERS = {
    "/": page,
    "/static/{name}": static,
    "/v1/poses": poses,
    "/v1/health": health,
    "/v1/models": models,
    "/openapi.json": openapi,
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """A JSON error answer; 408 and 413 close the connection (the rest of the body is not read)."""
    headers = dict(headers or {})
    if status in (408, 413):
        headers["Connection"] = "close"
    return Response(error_body(status, code, message), status, headers, media_type="application/json")


async def _on_api_error(request: Request, exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _on_http_error(request: Request, exc: HTTPException) -> Response:
    path = request.url.path[:200]
    if exc.status_code == 404:
        return error_response(404, "not_found", f"no such path: {path}", exc.headers)
    if exc.status_code == 405:
        return error_response(405, "method_not_allowed", f"{request.method} is not allowed on {path}", exc.headers)
    return error_response(400, "bad_request", str(exc.detail)[:200], exc.headers)


async def _on_bug(request: Request, exc: Exception) -> Response:
    logger.error("internal error on %s %s", request.method, request.url.path[:200], exc_info=exc)
    return error_response(500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")


def create_app(cfg: ServeConfig | None = None) -> Starlette:
    """The ASGI app of ``qa-headpose serve``; loads ``cfg.threads`` estimators now.

    Args:
        cfg: the model and limits (`ServeConfig`); None for the defaults.

    Returns:
        A Starlette app (run it with `server.run_server`, or any ASGI server without its connection limits).

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
    static_files = {name: (STATIC_DIR / name).read_bytes() for name in STATIC_FILES}
    spec = JSONResponse(openapi_document()).body
    state = _State(cfg, pool, UploadGate(cfg.max_uploads, cfg.max_buffered_bytes), model_info, static_files, spec)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        pool.shutdown()

    routes = [Route(path, HANDLERS[path], methods=list(methods)) for path, methods in ROUTES.items()]
    handlers = {ApiError: _on_api_error, HTTPException: _on_http_error, Exception: _on_bug}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.router.redirect_slashes = False  # a redirect would be built from the client's Host header
    app.state.serve = state
    return app
