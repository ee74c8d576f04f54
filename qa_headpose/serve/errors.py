"""The server's errors: `ApiError`, every error code with its status and meaning, and the one JSON body shape.

Every error answer, from a route, the router or the HTTP layer, is ``{"error": {"status", "code", "message"}}``
(`error_body`); `ERRORS` is the table the OpenAPI document is made from.
"""

from __future__ import annotations

import http
import json

# code: (HTTP status, when it is answered). The OpenAPI document lists these per route (schema.py).
ERRORS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "the HTTP request cannot be parsed (request line, headers, chunked framing, Content-Length)"),
    "empty_body": (400, "the body is empty"),
    "bad_image": (400, "the image is truncated, undecodable, or its header has no size"),
    "bad_multipart": (400, "the multipart body cannot be parsed, or it holds more than one file"),
    "no_image": (400, "the multipart body has no file field named image"),
    "client_disconnected": (400, "the client closed the connection before the body ended"),
    "not_found": (404, "no such path (paths have no trailing slash)"),
    "method_not_allowed": (405, "the method is not allowed on this path; Allow lists those that are"),
    "request_timeout": (408, "the request line and headers did not arrive within the header timeout"),
    "body_timeout": (408, "the body did not arrive within the body timeout, or the upload stalled and was dropped"),
    "body_too_large": (413, "the body is over the largest accepted (declared or streamed)"),
    "image_too_large": (413, "the image has more pixels than accepted (read from its header, before decoding)"),
    "unsupported_media_type": (415, "the body is not a JPEG, PNG or WebP image"),
    "headers_too_large": (431, "the request line and headers are over the largest accepted"),
    "internal_error": (500, "a bug in the server (logged without the request's data)"),
    "busy": (503, "the upload slots, the queue or the byte budget are full; retry after Retry-After seconds"),
}


class ApiError(Exception):
    """An error answered as ``{"error": {"status", "code", "message"}}``; its status comes from `ERRORS`."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = ERRORS[code][0]
        self.code, self.message, self.headers = code, message, headers or {}


def error_body(status: int, code: str, message: str) -> bytes:
    """The JSON bytes of one error answer."""
    return json.dumps({"error": {"status": status, "code": code, "message": message}}).encode()


def raw_error_response(code: str, message: str) -> bytes:
    """A whole HTTP/1.1 error answer that closes the connection, for the HTTP layer (no ASGI app involved)."""
    status = ERRORS[code][0]
    body = error_body(status, code, message)
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body
