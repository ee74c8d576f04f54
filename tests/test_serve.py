"""`qa-headpose serve` for real: the CLI's server on a free loopback port, its API, bad input and a bounded load.

Needs the serve extra (pip install -e .[serve]); skipped without it.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette", reason="qa-headpose serve needs the serve extra: pip install -e .[serve]")
pytest.importorskip("uvicorn", reason="qa-headpose serve needs the serve extra: pip install -e .[serve]")

from conftest import start_server, stop_server  # noqa: E402

from qa_headpose import HeadPoseEstimator  # noqa: E402
from qa_headpose.inference.images import decode_image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "qa_headpose" / "assets" / "astronaut.jpg"
MAX_BODY_MB = 1
MAX_PIXELS = 2**22
MAX_PENDING = 12
MAX_UPLOADS = 6
BODY_TIMEOUT_S = 3
FACE_KEYS = ("face", "box", "score", "yaw", "pitch", "roll")


def endpoint(url: str) -> dict:
    """What `request` needs of a server: its URL, host and port."""
    host, port = url[len("http://") :].rstrip("/").rsplit(":", 1)
    return {"url": url, "host": host, "port": int(port)}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    limits = ["--max-body-mb", str(MAX_BODY_MB), "--max-pixels", str(MAX_PIXELS), "--max-pending", str(MAX_PENDING)]
    limits += ["--max-uploads", str(MAX_UPLOADS)]
    proc, url, err = start_server(
        tmp_path_factory.mktemp("serve"), "--threads", "2", *limits, "--body-timeout", str(BODY_TIMEOUT_S)
    )
    yield {**endpoint(url), "stderr": err, "proc": proc}
    stop_server(proc)


@pytest.fixture(scope="module")
def estimator():
    return HeadPoseEstimator(num_threads=1)  # the server's workers run one-thread interpreters too


def connect(server, timeout: float) -> http.client.HTTPConnection:
    """A keep-alive connection with Nagle off: http.client sends headers and body in two writes, and Nagle's
    algorithm against the server's delayed ACK would add ~40 ms to every request (curl shows ~5 ms)."""
    conn = http.client.HTTPConnection(server["host"], server["port"], timeout=timeout)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, JSON or raw body) of one request on a new connection."""
    conn = http.client.HTTPConnection(server["host"], server["port"], timeout=30)
    try:
        try:
            conn.request(method, path, body=body, headers=headers or {})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (e.g. 413) and closed: its answer is still there to read
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    ctype = resp.getheader("Content-Type", "")
    return resp.status, resp, json.loads(data) if ctype.startswith("application/json") else data


def raw_exchange(server, chunks: list[bytes]) -> tuple[int, dict]:
    """Sends raw bytes on one socket, then reads the response: (status, JSON body)."""
    with socket.create_connection((server["host"], server["port"]), timeout=30) as sock:
        for chunk in chunks:
            sock.sendall(chunk)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _content_length(data):
            part = sock.recv(65536)
            if not part:
                break
            data += part
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _content_length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def expected_faces(estimator, payload: bytes) -> list[dict]:
    faces = estimator.predict_image(decode_image(payload))
    return [
        {"face": f.face, "box": [float(v) for v in f.box], "score": float(f.score), **f.pose._asdict()} for f in faces
    ]


def got_faces(answer: dict) -> list[dict]:
    return [{k: face[k] for k in FACE_KEYS} for face in answer["faces"]]


def multipart(fields: list[tuple[str, str | None, bytes]], boundary: str = "qa-headpose-test") -> tuple[bytes, dict]:
    parts = []
    for name, filename, data in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's first bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def assert_alive(server) -> None:
    status, _, body = request(server, "GET", "/v1/health")
    assert status == 200 and body["status"] == "ok"
    assert "Traceback" not in server["stderr"].read_text(), server["stderr"].read_text()[-3000:]


# ---------------------------------------------------------------- API round trip
def test_poses_match_predict_image(server, estimator):
    payload = SAMPLE.read_bytes()
    status, resp, answer = request(server, "POST", "/v1/poses", payload, {"Content-Type": "image/jpeg"})
    assert status == 200, answer
    assert resp.getheader("Content-Type") == "application/json"
    expected = expected_faces(estimator, payload)
    assert len(expected) == 1 and got_faces(answer) == expected
    face = answer["faces"][0]
    assert face["saturated"] is False
    assert np.allclose(np.asarray(face["axes"]) @ np.asarray(face["axes"]).T, np.eye(3), atol=1e-9)
    assert answer["image"] == {"width": 512, "height": 512, "format": "jpeg"}
    assert answer["model"]["name"] == "accurate" and answer["model"]["input_size"] == estimator.input_size
    assert set(answer["timings_ms"]) == {"read", "queue", "decode", "inference", "total"}
    assert answer["timings_ms"]["total"] >= answer["timings_ms"]["inference"] > 0


@pytest.mark.parametrize("kind", ["png", "webp", "multipart", "no-content-type"])
def test_poses_formats_and_multipart(server, estimator, kind):
    image = cv2.imread(str(SAMPLE))
    payload = SAMPLE.read_bytes()
    headers = {"Content-Type": "application/octet-stream"}
    body = payload
    if kind in ("png", "webp"):
        body = payload = cv2.imencode(f".{kind}", image)[1].tobytes()
    elif kind == "multipart":
        body, headers = multipart([("note", None, b"hello"), ("image", "face.jpg", payload)])
    elif kind == "no-content-type":
        headers = {}
    status, _, answer = request(server, "POST", "/v1/poses", body, headers)
    assert status == 200, answer
    assert got_faces(answer) == expected_faces(estimator, payload)
    assert answer["image"]["format"] == ("jpeg" if kind not in ("png", "webp") else kind)


def test_no_face_is_an_empty_list(server):
    payload = cv2.imencode(".png", np.full((64, 80, 3), 127, np.uint8))[1].tobytes()
    status, _, answer = request(server, "POST", "/v1/poses", payload, {"Content-Type": "image/png"})
    assert status == 200 and answer["faces"] == [] and answer["image"]["width"] == 80


def test_health_models_openapi_page(server):
    status, _, health = request(server, "GET", "/v1/health")
    assert status == 200 and health["status"] == "ok" and health["workers"] == 2
    assert health["max_pending"] == MAX_PENDING
    status, _, models = request(server, "GET", "/v1/models")
    assert status == 200
    (model,) = models["models"]
    assert (
        model["name"] == "accurate" and model["file"] == "headpose_accurate_int8.tflite" and model["input_size"] == 128
    )
    assert len(model["sha256"]) == 12 and models["version"] and model["mirror"] is False
    status, _, spec = request(server, "GET", "/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.") and "/v1/poses" in spec["paths"]
    status, resp, html = request(server, "GET", "/")
    assert status == 200 and resp.getheader("Content-Type").startswith("text/html")
    assert b'src="/static/app.js"' in html and b"http" not in html.replace(b"http-equiv", b"")  # no CDN
    assert "default-src 'self'" in resp.getheader("Content-Security-Policy")
    for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css")):
        status, resp, data = request(server, "GET", f"/static/{name}")
        assert status == 200 and resp.getheader("Content-Type").startswith(ctype) and len(data) > 500
    status, _, _ = request(server, "HEAD", "/")
    assert status == 200


# ---------------------------------------------------------------- bad input and abuse
def _truncated_jpeg() -> bytes:
    data = SAMPLE.read_bytes()
    return data[: len(data) // 2]


def _truncated_png() -> bytes:
    data = cv2.imencode(".png", cv2.imread(str(SAMPLE)))[1].tobytes()
    return data[: len(data) // 2]


def _real_bomb() -> bytes:
    """A valid 3000x3000 PNG of 14 kB: 9 megapixels, over the server's 2**22."""
    return cv2.imencode(".png", np.zeros((3000, 3000), np.uint8))[1].tobytes()


JPEG_WITHOUT_FRAME = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"

BAD_REQUESTS = {
    # name: (method, path, body, headers, status, error code)
    "not-an-image": ("POST", "/v1/poses", b"hello, not an image", {"Content-Type": "image/jpeg"}, 415, None),
    "html": ("POST", "/v1/poses", b"<html></html>", {"Content-Type": "text/html"}, 415, None),
    "empty": ("POST", "/v1/poses", b"", {"Content-Type": "image/jpeg"}, 400, "empty_body"),
    "truncated-jpeg": ("POST", "/v1/poses", _truncated_jpeg(), {}, 400, "bad_image"),
    "truncated-png": ("POST", "/v1/poses", _truncated_png(), {}, 400, "bad_image"),
    "jpeg-without-frame": ("POST", "/v1/poses", JPEG_WITHOUT_FRAME, {}, 400, "bad_image"),
    "bomb-header": ("POST", "/v1/poses", png_claiming(60000, 60000), {}, 413, "image_too_large"),
    "bomb-real": ("POST", "/v1/poses", _real_bomb(), {}, 413, "image_too_large"),
    "too-large-body": ("POST", "/v1/poses", b"\xff\xd8\xff" + bytes(MAX_BODY_MB * 2**20), {}, 413, "body_too_large"),
    "multipart-no-file": ("POST", "/v1/poses", *multipart([("image", None, b"text")]), 400, "no_image"),
    "multipart-broken": (
        "POST",
        "/v1/poses",
        b"--x\r\nContent-Disposition: form-data; name=image; filename=a.jpg\r\n\r\n\xff\xd8",
        {"Content-Type": "multipart/form-data; boundary=x"},
        400,
        None,
    ),
    "multipart-two-files": (
        "POST",
        "/v1/poses",
        *multipart([("a", "a.jpg", SAMPLE.read_bytes()), ("b", "b.jpg", SAMPLE.read_bytes())]),
        400,
        "bad_multipart",
    ),
    "get-poses": ("GET", "/v1/poses", None, {}, 405, "method_not_allowed"),
    "put-poses": ("PUT", "/v1/poses", b"x", {}, 405, "method_not_allowed"),
    "post-health": ("POST", "/v1/health", b"x", {}, 405, "method_not_allowed"),
    "delete-page": ("DELETE", "/", None, {}, 405, "method_not_allowed"),
    "unknown-path": ("GET", "/v2/poses", None, {}, 404, "not_found"),
    "unknown-static": ("GET", "/static/secret.py", None, {}, 404, "not_found"),
    "traversal": ("GET", "/static/../setup.cfg", None, {}, 404, "not_found"),
    "traversal-encoded": ("GET", "/static/..%2f..%2fsetup.cfg", None, {}, 404, "not_found"),
    "traversal-double": ("GET", "/static/%2e%2e/%2e%2e/qa_headpose/serve/app.py", None, {}, 404, "not_found"),
    "traversal-backslash": ("GET", "/static/..%5c..%5csetup.cfg", None, {}, 404, "not_found"),
    "static-folder": ("GET", "/static/", None, {}, 404, "not_found"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_request_is_a_json_4xx(server, case):
    method, path, body, headers, expected_status, code = BAD_REQUESTS[case]
    status, resp, answer = request(server, method, path, body, headers)
    assert status == expected_status, answer
    assert resp.getheader("Content-Type") == "application/json", answer
    error = answer["error"]
    assert error["status"] == status and error["message"] and "Traceback" not in error["message"]
    if code:
        assert error["code"] == code, error
    if status == 405:
        assert resp.getheader("Allow")
    assert_alive(server)


def test_body_limit_is_checked_before_reading(server):
    # Content-Length over the limit: refused at once, with only the headers sent.
    head = (
        f"POST /v1/poses HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {50 * 2**30}\r\n\r\n"
    ).encode()
    start = time.perf_counter()
    status, answer = raw_exchange(server, [head, b"\xff\xd8\xff"])
    assert status == 413 and answer["error"]["code"] == "body_too_large"
    assert time.perf_counter() - start < BODY_TIMEOUT_S
    assert_alive(server)


def test_streamed_body_limit_counts_bytes(server):
    # Chunked, so no Content-Length: the server counts the bytes and stops just past the limit.
    head = b"POST /v1/poses HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = 2**16
    chunks = [head] + [b"%x\r\n" % piece + b"\xff" * piece + b"\r\n"] * (MAX_BODY_MB * 2**20 // piece + 1)
    status, answer = raw_exchange(server, chunks)  # no final 0-chunk: the body never ends
    assert status == 413 and answer["error"]["code"] == "body_too_large"
    assert_alive(server)


def test_slow_body_times_out(server):
    head = b"POST /v1/poses HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000\r\n\r\n"
    start = time.perf_counter()
    status, answer = raw_exchange(server, [head, b"\xff\xd8\xff"])
    assert status == 408 and answer["error"]["code"] == "body_timeout"
    assert BODY_TIMEOUT_S - 0.5 < time.perf_counter() - start < BODY_TIMEOUT_S + 10
    assert_alive(server)


def test_full_upload_slots_answer_503_then_recover(server, estimator):
    """Uploads that keep sending (4 kB every 50 ms, above the stall thresholds) hold their slots: one more is
    refused with 503, and served once they leave."""
    declared = MAX_BODY_MB * 2**20 - 1000
    head = f"POST /v1/poses HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {declared}\r\n\r\n"
    held = [socket.create_connection((server["host"], server["port"]), timeout=30) for _ in range(MAX_UPLOADS)]
    stop = threading.Event()

    def keep_sending() -> None:
        for _ in range(200):  # at most 10 s, far less than the declared length takes
            for sock in held:
                sock.sendall(bytes(4096))
            if stop.wait(0.05):
                return

    for sock in held:
        sock.sendall(head.encode() + b"\xff\xd8\xff")
    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        deadline = time.monotonic() + BODY_TIMEOUT_S - 0.5
        while request(server, "GET", "/v1/health")[2]["uploading"] < MAX_UPLOADS:
            assert time.monotonic() < deadline, "the uploads did not all reach the server"
            time.sleep(0.02)
        status, resp, answer = request(server, "POST", "/v1/poses", SAMPLE.read_bytes(), {"Content-Type": "image/jpeg"})
        assert status == 503 and answer["error"]["code"] == "busy" and resp.getheader("Retry-After") == "1"
    finally:
        stop.set()
        sender.join(30)
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while request(server, "GET", "/v1/health")[2]["uploading"] > 0:
        assert time.monotonic() < deadline, "slots were not freed when the clients left"
        time.sleep(0.05)
    status, _, answer = request(server, "POST", "/v1/poses", SAMPLE.read_bytes(), {"Content-Type": "image/jpeg"})
    assert status == 200 and got_faces(answer) == expected_faces(estimator, SAMPLE.read_bytes())
    assert_alive(server)


# ---------------------------------------------------------------- load
LOAD_CLIENTS = int(os.environ.get("QA_HEADPOSE_LOAD_CLIENTS", "8"))
LOAD_REQUESTS = int(os.environ.get("QA_HEADPOSE_LOAD_REQUESTS", "200"))


def test_load_every_answer_correct(server, estimator, measured):
    """8 keep-alive clients x 200 requests on loopback: 0 errors, every answer the image's own poses."""
    image = cv2.imread(str(SAMPLE))
    payloads = [SAMPLE.read_bytes(), cv2.imencode(".jpg", image[:, ::-1])[1].tobytes()]  # the sample and its mirror
    expected = [expected_faces(estimator, p) for p in payloads]
    assert expected[0] != expected[1] and all(len(e) == 1 for e in expected)
    latencies: list[list[float]] = [[] for _ in range(LOAD_CLIENTS)]
    errors: list[str] = []

    def client(index: int) -> None:
        conn = connect(server, 60)
        try:
            for i in range(LOAD_REQUESTS):
                which = (index + i) % 2
                start = time.perf_counter()
                conn.request("POST", "/v1/poses", body=payloads[which], headers={"Content-Type": "image/jpeg"})
                resp = conn.getresponse()
                data = resp.read()
                latencies[index].append(time.perf_counter() - start)
                if resp.status != 200:
                    errors.append(f"client {index} request {i}: HTTP {resp.status} {data[:200]!r}")
                elif got_faces(json.loads(data)) != expected[which]:
                    errors.append(f"client {index} request {i}: wrong faces {data[:300]!r}")
        except Exception as exc:  # noqa: BLE001 - reported as a failed request, not a crashed thread
            errors.append(f"client {index}: {type(exc).__name__}: {exc}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(LOAD_CLIENTS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    wall = time.perf_counter() - start
    assert not errors, f"{len(errors)} errors, first: {errors[:3]}"
    all_ms = np.asarray([v for per in latencies for v in per]) * 1e3
    assert len(all_ms) == LOAD_CLIENTS * LOAD_REQUESTS
    measured(
        f"serve load: {LOAD_CLIENTS} clients x {LOAD_REQUESTS} requests, 512x512 JPEG, 2 workers: "
        f"{len(all_ms) / wall:.1f} requests/s, p50 {np.percentile(all_ms, 50):.1f} ms, "
        f"p99 {np.percentile(all_ms, 99):.1f} ms, 0 errors ({wall:.1f} s, {os.cpu_count()} CPUs)"
    )
    assert_alive(server)


def test_single_client_latency(server, measured):
    """One client, one request at a time: the latency of a single image, reported (not asserted)."""
    payload = SAMPLE.read_bytes()
    conn = connect(server, 60)
    times = []
    try:
        for i in range(60):
            start = time.perf_counter()
            conn.request("POST", "/v1/poses", body=payload, headers={"Content-Type": "image/jpeg"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            if i >= 10:
                times.append((time.perf_counter() - start) * 1e3)
    finally:
        conn.close()
    measured(
        f"serve single client: 50 sequential requests, 512x512 JPEG: p50 {np.percentile(times, 50):.1f} ms, "
        f"p99 {np.percentile(times, 99):.1f} ms, {1e3 / np.mean(times):.1f} requests/s"
    )


def test_cli_refuses_a_bad_model_with_exit_2(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    result = subprocess.run(
        [sys.executable, "-m", "qa_headpose.cli", "serve", "--port", "0", "--model", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("qa-headpose serve: error:") and "Traceback" not in result.stderr


def test_mirror_server_answers_what_a_mirroring_estimator_does(tmp_path):
    """``serve --mirror``: poses of `HeadPoseEstimator(mirror=True)`, and /v1/models says so."""
    proc, url, _ = start_server(tmp_path, "--threads", "1", "--mirror")
    try:
        mirrored = endpoint(url)
        payload = SAMPLE.read_bytes()
        status, _, answer = request(mirrored, "POST", "/v1/poses", payload, {"Content-Type": "image/jpeg"})
        assert status == 200, answer
        assert got_faces(answer) == expected_faces(HeadPoseEstimator(num_threads=1, mirror=True), payload)
        assert got_faces(answer) != expected_faces(HeadPoseEstimator(num_threads=1), payload)
        status, _, models = request(mirrored, "GET", "/v1/models")
        assert status == 200 and models["models"][0]["mirror"] is True
    finally:
        stop_server(proc)
