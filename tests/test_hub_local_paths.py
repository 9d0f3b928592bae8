"""A mistyped local model path says the directory does not exist - never "hf download runs/nonexistent"."""

from __future__ import annotations

import pytest

from vlgen.errors import ModelNotAvailableError
from vlgen.hub import resolve_model


@pytest.mark.parametrize(
    ("ref", "detail"),
    [
        ("runs/nonexistent", "(runs/ exists, but has no 'nonexistent')"),  # exists partially
        ("runs/best/model", "(runs/ exists, but has no 'best')"),
        ("./nonexistent", ""),
        ("../nonexistent", ""),
        ("a/b/c", ""),  # more than one separator: no hub id has that form
    ],
)
def test_mistyped_local_path_is_not_sent_to_the_hub(ref, detail, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "runs").mkdir()
    with pytest.raises(ModelNotAvailableError) as e:
        resolve_model(ref, what="captioning model")
    msg = str(e.value)
    assert f"captioning model '{ref}': no such directory" in msg and detail in msg
    assert "hf download" not in msg and "cache" not in msg


def test_owner_name_without_a_local_folder_is_still_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="not in the local cache"):
        resolve_model("someone/model")
