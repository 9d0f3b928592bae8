import json

from vlgen import __version__
from vlgen.cli import main


def test_env_json_reports_versions_device_hub_and_java(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["vlgen"] == __version__
    assert set(info["versions"]) >= {"torch", "transformers", "diffusers", "peft", "accelerate"}
    assert info["versions"]["torch"]
    assert info["device"]["device"] in {"cpu", "cuda", "mps"}
    assert info["hub"] == {"endpoint": info["hub"]["endpoint"], "offline": True, "reachable": None}
    assert {"hf_hub_cache", "torch_hub"} <= set(info["caches"])
    assert isinstance(info["java"]["present"], bool)


def test_env_table_and_usage_errors(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["env"]) == 0
    assert "transformers" in capsys.readouterr().out
    assert main(["env", "--bogus"]) == 2
    assert "No such option" in capsys.readouterr().err
