"""With --api-key, /v1/* needs `Authorization: Bearer KEY` or `X-API-Key: KEY`; /, /health and the spec don't."""

from __future__ import annotations

import httpx
import pytest
from servefixtures import API_KEY, png_bytes

from vlgen.serving.process import ServerProcess


def _caption(server: ServerProcess, headers: dict) -> httpx.Response:
    files = {"file": ("a.png", png_bytes())}
    return httpx.post(f"{server.url}/v1/caption", files=files, data={"num_beams": "1", "max_new_tokens": "3"},
                      headers=headers, timeout=60)  # fmt: skip


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": API_KEY},  # no scheme
        {"Authorization": f"Basic {API_KEY}"},
        {"X-API-Key": API_KEY[:-1]},
        {"X-API-Key": API_KEY + "x"},
        {"X-API-Key": "caf\u00e9".encode("latin-1")},  # non-ASCII must not crash compare_digest
    ],
    ids=["none", "wrong", "no-scheme", "basic", "short", "long", "non-ascii"],
)
def test_missing_or_wrong_key_is_401(keyed_server: ServerProcess, headers: dict) -> None:
    for r in (
        _caption(keyed_server, headers),
        httpx.get(f"{keyed_server.url}/v1/models", headers=headers),
        httpx.post(f"{keyed_server.url}/v1/generate", content=b"{bad json", headers=headers),  # 401 before 422
    ):
        assert r.status_code == 401, r.text
        assert r.json()["error"]["type"] == "authentication_error"
        assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {API_KEY}"}, {"X-API-Key": API_KEY}])
def test_right_key_is_accepted(keyed_server: ServerProcess, headers: dict) -> None:
    assert _caption(keyed_server, headers).status_code == 200
    assert httpx.get(f"{keyed_server.url}/v1/models", headers=headers).status_code == 200
    r = httpx.post(f"{keyed_server.url}/v1/generate", json={"prompt": "a cat"}, headers=headers)
    assert r.status_code == 501 and "--t2i-base" in r.json()["error"]["message"]


def test_public_paths_need_no_key(keyed_server: ServerProcess) -> None:
    health = httpx.get(f"{keyed_server.url}/health").json()
    assert health["status"] == "ok" and health["auth_required"] is True
    assert httpx.get(f"{keyed_server.url}/").status_code == 200
    assert httpx.get(f"{keyed_server.url}/openapi.json").status_code == 200
