"""Helpers shared by the serving tests (imported as `from servefixtures import ...`)."""

from __future__ import annotations

import contextlib
import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator

import httpx
from PIL import Image

API_KEY = "test-key-0123456789abcdef"
MAX_BODY_MB = 1


def png_bytes(color=(200, 30, 30), size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG header declaring width x height pixels with a tiny body (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@contextlib.contextmanager
def serve_in_thread(app, settings) -> Iterator[str]:
    """Run `app` under uvicorn, configured exactly as `vlgen serve` does (`uvicorn_options`), in a thread;
    yields its base URL. For tests that need real sockets (disconnects, stalled clients) but a fake model."""
    import uvicorn

    from vlgen.serving.http import uvicorn_options

    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings, "warning")))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://{settings.host}:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(15)


def raw_request(request: httpx.Request) -> bytes:
    """The bytes of an HTTP/1.1 request as httpx would send them (head + body), to write to a raw socket."""
    body = request.read()
    head = f"{request.method} {request.url.raw_path.decode()} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
    return head.encode("latin-1") + b"\r\n" + body


def connect(url: str, timeout: float = 10.0) -> socket.socket:
    u = httpx.URL(url)
    return socket.create_connection((u.host, u.port), timeout=timeout)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket.timeout if it never does)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data
