"""Hostile clients against ``qa-headpose serve`` on loopback: each attack of issue 25, measured.

Starts the server (``python -m qa_headpose.cli serve --port 0 ...``) under a 1,024 open-files limit, runs each
attack with bounded loops while a prober asks ``GET /v1/health`` every 50 ms, and prints one line per attack:
the worst health latency, what a normal upload got, the server's peak RSS (VmHWM) and its log size.

    python tools/serve_attacks.py                      # every attack, default server flags + --threads 2
    python tools/serve_attacks.py --only jpeg idle     # some of them
    python tools/serve_attacks.py -- --max-pending 8   # extra server flags after --

tests/test_hostile.py imports the payload builders and clients from here (one home for each attack).
"""

from __future__ import annotations

import argparse
import json
import resource
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

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "qa_headpose" / "assets" / "astronaut.jpg"


# ---------------------------------------------------------------- payloads
def crafted_jpeg(size: int) -> bytes:
    """The sample's real JPEG header up to its scan, then ``size`` bytes of 0xFF, then EOI (issue 25, attack 1)."""
    data = SAMPLE.read_bytes()
    sos = data.index(b"\xff\xda")
    header = data[: sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")]
    return header + b"\xff" * size + b"\xff\xd9"


def png_16bit_rgba(width: int, height: int) -> bytes:
    """A valid 16-bit RGBA PNG of zeros, width x height (8 bytes per pixel decoded; a few kB sent)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" + bytes(width * 8)
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def exif_jpeg(image: np.ndarray, orientation: int) -> bytes:
    """``image`` as a JPEG carrying an EXIF APP1 segment with the given Orientation tag (0x0112)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + tiff
    data = buf.tobytes()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


# ---------------------------------------------------------------- clients
def http(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None, timeout: float = 30):
    """(status, content type, body bytes, seconds) of one request on a new connection; status 0 if refused."""
    host, port = url[len("http://") :].rstrip("/").rsplit(":", 1)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return exchange(url, ("\r\n".join(lines) + "\r\n\r\n").encode() + body, timeout)


def exchange(url: str, raw: bytes, timeout: float = 30) -> tuple[int, str, bytes, float]:
    """Sends raw bytes on a new connection and reads until the server closes: (status, content type, body, s)."""
    host, port = url[len("http://") :].rstrip("/").rsplit(":", 1)
    start = time.perf_counter()
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            try:
                sock.sendall(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # answered early and closed: the answer may still be there to read
            data = b""
            while True:
                try:
                    part = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not part:
                    break
                data += part
    except OSError:
        return 0, "", b"", time.perf_counter() - start
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1]) if lines[0].startswith(b"HTTP/") else 0
    ctype = next((v.strip() for k, _, v in (x.partition(b":") for x in lines[1:]) if k.lower() == b"content-type"), b"")
    if b"chunked" in head.lower():
        body = _unchunk(body)
    return status, ctype.decode("latin1"), body, time.perf_counter() - start


def _unchunk(body: bytes) -> bytes:
    out, pos = b"", 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            return out
        size = int(body[pos:end].split(b";")[0] or b"0", 16)
        if size == 0:
            return out
        out += body[end + 2 : end + 2 + size]
        pos = end + 4 + size


class HealthProbe:
    """Asks ``GET /v1/health`` every 50 ms on a new connection, from another process (this script with
    ``--probe``), so the attackers' threads here cannot delay it; keeps the worst latency and the failures."""

    def __init__(self, url: str) -> None:
        self.url, self.worst, self.failures, self.count = url, 0.0, 0, 0

    def __enter__(self) -> HealthProbe:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", self.url]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout.readline().strip() == "probing"  # the first request has been answered
        return self

    def __exit__(self, *exc) -> None:
        out, _ = self._proc.communicate("", timeout=60)  # closing its stdin stops it
        self.worst, self.failures, self.count = json.loads(out.splitlines()[-1])


def _probe(url: str) -> None:
    worst, failures, count = 0.0, 0, 0
    stop = threading.Event()

    def run() -> None:
        nonlocal worst, failures, count
        while True:
            status, _, _, seconds = http(url, "GET", "/v1/health", timeout=30)
            if count == 0:
                print("probing", flush=True)
            count, worst, failures = count + 1, max(worst, seconds), failures + (status != 200)
            if stop.wait(0.05):
                return

    thread = threading.Thread(target=run)
    thread.start()
    sys.stdin.read()
    stop.set()
    thread.join(60)
    print(json.dumps([worst, failures, count]), flush=True)


def open_idle(url: str, count: int) -> list[socket.socket]:
    """``count`` connections that send nothing (attack 2); stops early if the client runs out of sockets."""
    host, port = url[len("http://") :].rstrip("/").rsplit(":", 1)
    socks = []
    for _ in range(count):
        try:
            socks.append(socket.create_connection((host, int(port)), timeout=5))
        except OSError:
            break
    return socks


def stall_uploads(url: str, count: int, declared: int = 100_000) -> list[socket.socket]:
    """``count`` uploads that send their headers and 3 bytes of a ``declared``-byte body, then stall (attack 3)."""
    socks = open_idle(url, count)
    head = f"POST /v1/poses HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {declared}\r\n\r\n"
    for sock in socks:
        sock.sendall(head.encode() + b"\xff\xd8\xff")
    return socks


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closes ``sock`` (reads and drops what it sends), None if still open after."""
    start = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < seconds:
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - start
    return None


# ---------------------------------------------------------------- malformed requests (attack 5)
def malformed_requests(host: str) -> dict[str, bytes]:
    """Raw requests that the HTTP layer or the router refuses; every answer must be a JSON error."""
    h = f"Host: {host}\r\nConnection: close\r\n"
    return {
        "bad-request-line": b"HELLO\r\n\r\n",
        "bad-version": f"GET /v1/health HTTP/9.9\r\n{h}\r\n".encode(),
        "bad-header": f"GET /v1/health HTTP/1.1\r\n{h}Bad Header\r\n\r\n".encode(),
        "bad-chunk": f"POST /v1/poses HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\nzz\r\n".encode(),
        "cl-and-te": f"POST /v1/poses HTTP/1.1\r\n{h}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode(),
        "huge-header": f"GET /v1/health HTTP/1.1\r\n{h}X-Big: {'a' * 200_000}\r\n\r\n".encode(),
        "trailing-slash": f"GET /v1/health/ HTTP/1.1\r\n{h}\r\n".encode(),
        "trailing-slash-evil-host": b"GET /v1/models/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        "static-slash": f"GET /static/app.js/ HTTP/1.1\r\n{h}\r\n".encode(),
        "unknown-method": f"BREW /v1/poses HTTP/1.1\r\n{h}\r\n".encode(),
        "options": f"OPTIONS /v1/poses HTTP/1.1\r\n{h}\r\n".encode(),
        "bad-content-length": f"POST /v1/poses HTTP/1.1\r\n{h}Content-Length: abc\r\n\r\n".encode(),
        "http10-no-host": b"GET /v1/health/ HTTP/1.0\r\n\r\n",
        "absolute-uri": f"GET http://evil.example/v1/health/ HTTP/1.1\r\n{h}\r\n".encode(),
    }


def non_json_errors(url: str) -> list[str]:
    """The malformed requests whose answer is an error (>= 300) without a JSON body; [] is the goal."""
    host = url[len("http://") :].rstrip("/")
    bad = []
    for name, raw in malformed_requests(host).items():
        status, ctype, body, _ = exchange(url, raw, timeout=15)
        if status == 0:
            continue  # closed without an answer
        if status >= 300:
            try:
                ok = ctype.startswith("application/json") and json.loads(body)["error"]["status"] == status
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                bad.append(f"{name}: {status} {ctype} {body[:60]!r}")
    return bad


# ---------------------------------------------------------------- the server
def start(args: list[str], log: Path, nofile: int = 1024, hard: bool = False) -> tuple[subprocess.Popen, str]:
    """``qa-headpose serve --port 0 *args`` under an open-files limit of ``nofile`` (soft, or also ``hard`` so the
    server cannot raise it); (process, URL)."""

    def limit() -> None:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (nofile, nofile if hard else resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        )

    out = log.with_suffix(".out")
    with open(out, "wb") as fo, open(log, "wb") as fe:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qa_headpose.cli", "serve", "--port", "0", *args],
            cwd=REPO,
            stdout=fo,
            stderr=fe,
            preexec_fn=limit,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for line in out.read_text().splitlines():
            if " open http://" in line:
                return proc, line.split(" open ")[1].split()[0]
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start within 120 s")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def normal_upload(url: str) -> tuple[int, float]:
    status, _, _, seconds = http(url, "POST", "/v1/poses", SAMPLE.read_bytes(), {"Content-Type": "image/jpeg"}, 30)
    return status, seconds


def in_parallel(fn, count: int) -> list:
    results = [None] * count

    def run(i: int) -> None:
        results[i] = fn()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return results


# ---------------------------------------------------------------- the attacks
def attack_jpeg(url: str) -> str:
    payload = crafted_jpeg(20 * 2**20 - 2000)
    lines = []
    for count in (1, 4):
        with HealthProbe(url) as probe:
            answers = in_parallel(
                lambda: http(url, "POST", "/v1/poses", payload, {"Content-Type": "image/jpeg"}), count
            )
        lines.append(
            f"{count} x 20 MiB crafted JPEG: answers {[a[0] for a in answers]} in {max(a[3] for a in answers):.1f} s, "
            f"health worst {probe.worst:.2f} s ({probe.failures} failed of {probe.count})"
        )
    return "; ".join(lines)


def attack_idle(url: str) -> str:
    with HealthProbe(url) as probe:
        socks = open_idle(url, 1100)
        status, seconds = normal_upload(url)
        slow = open_idle(url, 1)[0] if socks else None
        dripped = 0
        if slow is not None:
            start = time.monotonic()
            for byte in b"GET /v1/health HTTP/1.1\r\nHost: x\r\n":
                if time.monotonic() - start > 40:
                    break
                try:
                    slow.sendall(bytes([byte]))
                    dripped += 1
                except OSError:
                    break
                if closed_within(slow, 1.0) is not None:
                    break
        idle_closed = closed_within(socks[0], 1.0) if socks else None
        for s in socks + ([slow] if slow else []):
            s.close()
    return (
        f"{len(socks)} idle sockets: normal upload {status} in {seconds:.2f} s; a 1 byte/s header was cut after "
        f"{dripped} bytes; health worst {probe.worst:.2f} s ({probe.failures} failed of {probe.count}); "
        f"first idle socket {'closed' if idle_closed is not None else 'still open'} after the drip"
    )


def attack_stall(url: str, count: int = 32) -> str:
    with HealthProbe(url) as probe:
        socks = stall_uploads(url, count)
        time.sleep(1.0)  # a measurement tool: let the stalled uploads reach the server
        status, seconds = normal_upload(url)
        for s in socks:
            s.close()
    return f"{count} stalled uploads: normal upload {status} in {seconds:.2f} s; health worst {probe.worst:.2f} s"


def attack_memory(url: str, side: int) -> str:
    payload = png_16bit_rgba(side, side)
    with HealthProbe(url) as probe:
        answers = in_parallel(lambda: http(url, "POST", "/v1/poses", payload, {"Content-Type": "image/png"}), 4)
    return (
        f"4 x 16-bit RGBA PNG {side}x{side} ({len(payload) // 1024} kB each): answers {[a[0] for a in answers]}, "
        f"health worst {probe.worst:.2f} s"
    )


def held_uploads(url: str, count: int, size: int = 19 * 2**20) -> list[socket.socket]:
    """``count`` uploads that send ``size`` bytes fast, then stall before their last kB: bodies held in memory."""
    socks = open_idle(url, count)
    head = f"POST /v1/poses HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {size + 1024}\r\n\r\n"
    for sock in socks:
        try:
            sock.sendall(head.encode() + b"\xff\xd8\xff" + bytes(size - 3))
        except OSError:
            pass  # refused (503) once the byte budget is full
    return socks


def attack_mix(url: str, side: int) -> str:
    """Every attack at once for ~10 s, while a normal client uploads every 0.3 s: its worst latency."""
    crafted, bomb = crafted_jpeg(20 * 2**20 - 2000), png_16bit_rgba(side, side)
    latencies: list[float] = []
    statuses: list[int] = []
    stop = threading.Event()

    def normal_client() -> None:
        while not stop.wait(0.3):
            start, status = time.monotonic(), 0
            while status != 200 and time.monotonic() - start < 30:  # retries a 503 after 0.25 s
                status = normal_upload(url)[0]
                statuses.append(status)
                if status != 200:
                    time.sleep(0.25)
            latencies.append(time.monotonic() - start)

    with HealthProbe(url) as probe:
        held = held_uploads(url, 13)
        idle = open_idle(url, 300)
        stalled = stall_uploads(url, 20)
        client = threading.Thread(target=normal_client)
        client.start()
        heavy = [(crafted, "image/jpeg")] * 2 + [(bomb, "image/png")] * 4
        answers = in_parallel(lambda: http(url, "POST", "/v1/poses", *_pop(heavy), 120), len(heavy))
        stop.wait(3.0)  # a measurement tool: keep the attack up a little longer
        stop.set()
        client.join(60)
        for sock in held + idle + stalled:
            sock.close()
    return (
        f"13 held 19 MiB bodies + 300 idle + 20 stalled + 2 crafted JPEG + 4 PNG bombs: heavy answers "
        f"{sorted(a[0] for a in answers)}; normal client: {len(latencies)} uploads served, worst {max(latencies):.2f} s "
        f"to a 200 ({statuses.count(503)} x 503 retried); health worst {probe.worst:.2f} s ({probe.failures} failed of {probe.count})"
    )


def _pop(items: list) -> tuple:
    payload, ctype = items.pop()
    return payload, {"Content-Type": ctype}


def attack_errors(url: str) -> str:
    bad = non_json_errors(url)
    return f"{len(malformed_requests('x'))} malformed requests: {len(bad)} non-JSON error bodies {bad}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=["jpeg", "idle", "stall", "memory", "errors", "mix"])
    p.add_argument("--side", type=int, default=5792, help="PNG side for the memory attack (default: 2**25 px)")
    p.add_argument("--log", type=Path, default=Path("/tmp/serve_attacks.err"))
    p.add_argument("--probe", metavar="URL", help=argparse.SUPPRESS)  # HealthProbe's other process
    p.add_argument("server_args", nargs="*")
    args = p.parse_args(argv)
    if args.probe:
        _probe(args.probe)
        return 0
    proc, url = start(["--threads", "2", *args.server_args], args.log)
    try:
        print(f"server {url} pid {proc.pid}: RSS after start {peak_rss_mb(proc.pid):.0f} MB", flush=True)
        for name in args.only:
            line = {
                "jpeg": attack_jpeg,
                "idle": attack_idle,
                "stall": attack_stall,
                "memory": lambda u: attack_memory(u, args.side),
                "errors": attack_errors,
                "mix": lambda u: attack_mix(u, args.side),
            }[name](url)
            alive = http(url, "GET", "/v1/health", timeout=30)[0]
            print(
                f"{name}: {line}; peak RSS {peak_rss_mb(proc.pid):.0f} MB; log {args.log.stat().st_size} bytes; "
                f"health after {alive}",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
