"""Clients that stall mid-request are cut off: a head not complete within --header-timeout-s, or a body that
pauses longer than --body-timeout-s, gets a 408 and a closed connection (uvicorn alone holds them forever).

Real sockets against uvicorn configured as `vlgen serve` configures it (`uvicorn_options`), a fake model.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from servefixtures import connect, png_bytes, raw_request, read_until_closed, serve_in_thread

from vlgen.serving.app import create_app
from vlgen.serving.process import free_port
from vlgen.serving.settings import ServeSettings

TIMEOUT_S = 1.0


class EchoCaptioner:
    family = "fake"

    def generate(self, images, num_beams=1, max_new_tokens=30):
        return [f"a {im.width}x{im.height} image" for im in images]


@pytest.fixture(scope="module")
def url():
    settings = ServeSettings(port=free_port(), header_timeout_s=TIMEOUT_S, body_timeout_s=TIMEOUT_S)
    with serve_in_thread(create_app(settings, captioner=EchoCaptioner()), settings) as base:
        yield base


def _caption_request(url: str) -> bytes:
    files = {"file": ("a.png", png_bytes(size=(64, 48)))}
    return raw_request(httpx.Request("POST", url + "/v1/caption", files=files, data={"num_beams": "1"}))


def _read_response(sock: socket.socket) -> bytes:
    """One whole response (head + Content-Length bytes of body) from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(v) for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n")) if k.lower() == b"content-length"
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _status_and_error(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)["error"]


def test_half_a_head_is_cut_off_with_408(url: str) -> None:
    with connect(url) as sock:
        t0 = time.monotonic()
        sock.sendall(_caption_request(url)[:60])  # request line and part of the headers, then silence
        response = read_until_closed(sock)
        elapsed = time.monotonic() - t0
    status, error = _status_and_error(response)
    assert status == 408 and error["type"] == "request_timeout" and "--header-timeout-s" in error["message"]
    assert TIMEOUT_S * 0.8 <= elapsed < TIMEOUT_S + 2, elapsed


def test_a_silent_connection_is_closed_without_a_response(url: str) -> None:
    with connect(url) as sock:
        t0 = time.monotonic()
        assert read_until_closed(sock) == b""  # nothing was asked, so nothing is answered
        assert time.monotonic() - t0 < TIMEOUT_S + 2


def test_a_stalled_body_is_cut_off_with_408(url: str) -> None:
    request = _caption_request(url)
    head_end = request.index(b"\r\n\r\n") + 4
    with connect(url) as sock:
        t0 = time.monotonic()
        sock.sendall(request[: head_end + 100])  # the whole head, 100 bytes of the body, then silence
        response = read_until_closed(sock)  # 408, then the server closes (the body will never be read)
        elapsed = time.monotonic() - t0
    status, error = _status_and_error(response)
    assert status == 408 and error["type"] == "request_timeout" and "--body-timeout-s" in error["message"]
    assert TIMEOUT_S * 0.8 <= elapsed < TIMEOUT_S + 2, elapsed


def test_the_next_head_on_a_kept_alive_connection_is_timed_too(url: str) -> None:
    health = raw_request(httpx.Request("GET", url + "/health"))
    with connect(url) as sock:
        sock.sendall(health)
        first = _read_response(sock)
        assert first.startswith(b"HTTP/1.1 200"), first[:100]
        sock.sendall(health[:20])
        t0 = time.monotonic()
        response = read_until_closed(sock)
    assert _status_and_error(response)[0] == 408
    assert time.monotonic() - t0 < TIMEOUT_S + 2


def test_a_slow_but_steady_client_is_served(url: str) -> None:
    """The body timeout is a pause limit, not a deadline: 0.4 s pauses (under the 1 s limit) add up to more
    than the limit and still get their answer."""
    request = _caption_request(url)
    with connect(url) as sock:
        sock.settimeout(10)
        step = len(request) // 5 + 1
        for i in range(0, len(request), step):
            sock.sendall(request[i : i + step])
            time.sleep(0.4)
        response = _read_response(sock)
    assert response.startswith(b"HTTP/1.1 200"), response[:200]
    assert b"a 64x48 image" in response


def test_normal_requests_are_unaffected(url: str) -> None:
    r = httpx.post(url + "/v1/caption", files={"file": ("a.png", png_bytes())}, data={"num_beams": "1"}, timeout=10)
    assert r.status_code == 200, r.text
    with pytest.raises(socket.timeout), connect(url, timeout=TIMEOUT_S / 2) as sock:
        sock.recv(1)  # a fresh connection is not closed at once
