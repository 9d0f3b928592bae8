"""The page at / in headless Chromium: upload an image -> its caption appears; prompt -> the image appears;
and the page makes no request outside the server's origin."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from cdp import Browser, find_chromium
from servefixtures import png_bytes

from vlgen.serving.process import ServerProcess

pytestmark = pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (apt-get install chromium)")


def test_page_captions_an_upload_and_generates(server: ServerProcess, tmp_path: Path) -> None:
    image = tmp_path / "red.png"
    image.write_bytes(png_bytes((220, 20, 20), size=(40, 30)))
    expected = httpx.post(
        f"{server.url}/v1/caption",
        files={"file": ("red.png", image.read_bytes())},
        data={"num_beams": "1", "max_new_tokens": "5"},
        timeout=60,
    ).json()["captions"][0]["caption"]

    with Browser.launch() as browser:
        page = browser.page()
        page.send("Network.enable")
        page.navigate(server.url + "/")
        page.wait_for("document.getElementById('status').textContent.startsWith('server ok')")
        page.eval("document.getElementById('num-beams').value = '1'")
        page.eval("document.getElementById('max-new-tokens').value = '5'")
        page.set_files("#file", [str(image)])
        page.eval("document.getElementById('caption-button').click()")
        result = page.wait_for(
            "(() => { const el = document.getElementById('caption-result');"
            " return /caption|bad/.test(el.className) && JSON.stringify([el.className, el.textContent]); })()"
        )
        cls, text = json.loads(result)
        assert "caption" in cls, text
        assert text == expected
        assert page.eval("document.getElementById('preview').naturalWidth") == 40

        page.eval("document.getElementById('prompt').value = 'a red cube'")
        page.eval("document.getElementById('steps').value = '2'")
        page.eval("document.getElementById('seed').value = '5'")
        page.eval("document.getElementById('generate-button').click()")
        page.wait_for("document.getElementById('generated').naturalWidth > 0", timeout=120)
        assert page.eval("document.getElementById('generated').naturalWidth") == 64
        assert page.eval("document.getElementById('generate-result').textContent") == "seed 5"

        urls = [e["params"]["request"]["url"] for e in page.events if e.get("method") == "Network.requestWillBeSent"]
        page.close()
    assert urls and all(u.startswith((server.url, "blob:", "data:")) for u in urls), urls
