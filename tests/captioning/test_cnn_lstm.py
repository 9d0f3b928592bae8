import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vlgen.captioning.cnn_lstm import (
    CnnLstmConfig,
    CnnLstmModel,
    Vocabulary,
    build_tiny_cnn_lstm,
    is_cnn_lstm_checkpoint,
    tokenize,
)
from vlgen.errors import ConfigError, ModelNotAvailableError
from vlgen.hub import resolve_model

CAPTIONS = ["a red circle", "a blue square", "two red circles above a blue square", "a green triangle"]


def _images():
    return [
        Image.new("RGB", (40, 30), (255, 0, 0)),
        Image.new("RGB", (50, 50), (0, 0, 255)),
        Image.new("RGB", (32, 64), (0, 200, 0)),
    ]


def _tiny(attention=True, seed=0):
    torch.manual_seed(seed)
    cfg = CnnLstmConfig(
        encoder="tiny",
        encoder_weights="none",
        freeze_encoder=False,
        attention=attention,
        image_size=32,
        embed_dim=16,
        hidden_dim=32,
        attention_dim=16,
        tiny_channels=[8, 16],
        dropout=0.0,
    )
    return CnnLstmModel(cfg, Vocabulary.build(CAPTIONS))


def test_vocabulary_is_deterministic_and_round_trips():
    v1 = Vocabulary.build(CAPTIONS)
    v2 = Vocabulary.build(list(reversed(CAPTIONS)))
    assert v1.itos == v2.itos
    assert v1.itos[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    ids = v1.encode("Two red circles above a blue square.")
    assert ids[0] == Vocabulary.BOS and ids[-1] == Vocabulary.EOS
    assert Vocabulary.UNK in ids  # "." was never seen in training captions
    assert v1.decode(ids) == "two red circles above a blue square <unk>"
    assert v1.encode("a red circle", max_length=3) == [Vocabulary.BOS, v1.stoi["a"], Vocabulary.EOS]


def test_min_count_drops_rare_words():
    v = Vocabulary.build(CAPTIONS, min_count=2)
    assert "triangle" not in v.stoi and "red" in v.stoi
    assert tokenize("A red, glossy Circle") == ["a", "red", ",", "glossy", "circle"]


def test_bad_config_names_the_value():
    with pytest.raises(ConfigError, match="vgg16"):
        CnnLstmConfig(encoder="vgg16")


@pytest.mark.parametrize("attention", [False, True])
def test_forward_shapes_and_attention_normalised(attention):
    model = _tiny(attention)
    pv = model.preprocess(_images())
    assert pv.shape == (3, 3, 32, 32)
    ids = [model.vocab.encode(c) for c in CAPTIONS[:3]]
    T = max(map(len, ids))
    input_ids = torch.tensor([x + [Vocabulary.PAD] * (T - len(x)) for x in ids])
    out = model(input_ids, pixel_values=pv)
    assert out.logits.shape == (3, T - 1, len(model.vocab))
    assert torch.isfinite(out.loss)
    if attention:
        assert out.alphas.shape[-1] == 8 * 8  # two stride-2 blocks: 32 px -> 8x8 positions
        torch.testing.assert_close(out.alphas.sum(-1), torch.ones(3, T - 1))
    else:
        assert out.alphas is None


@pytest.mark.parametrize("attention", [False, True])
def test_training_steps_reduce_loss_on_fixed_batch(attention):
    model = _tiny(attention)
    pv = model.preprocess(_images())
    ids = [model.vocab.encode(c) for c in CAPTIONS[:3]]
    T = max(map(len, ids))
    input_ids = torch.tensor([x + [Vocabulary.PAD] * (T - len(x)) for x in ids])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    first = None
    for _ in range(30):
        loss = model(input_ids, pixel_values=pv).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    # After fitting, greedy decoding reproduces the memorised captions.
    ids = model.generate(pixel_values=pv)
    assert [model.vocab.decode(x) for x in ids] == CAPTIONS[:3]


def test_beam_with_one_beam_equals_greedy():
    model = _tiny(attention=True).eval()
    feats = model.encode(model.preprocess(_images()))
    greedy = model.generate(features=feats, max_new_tokens=10)
    one_beam = [model._beam(feats[i : i + 1], 1, 10, 1.0) for i in range(feats.shape[0])]
    assert greedy == one_beam
    beams = model.generate(features=feats, num_beams=3, max_new_tokens=10)
    assert len(beams) == 3 and all(len(b) <= 10 for b in beams)
    assert all(Vocabulary.BOS not in b and Vocabulary.PAD not in b for b in beams + greedy)


def test_save_load_round_trip_through_resolver(tmp_path):
    out = build_tiny_cnn_lstm(tmp_path / "tiny")
    assert is_cnn_lstm_checkpoint(out)
    resolved = resolve_model(str(out))
    assert resolved.source == "local"
    a = CnnLstmModel.from_pretrained(resolved.path)
    b = CnnLstmModel.from_pretrained(out)
    assert not a.training
    pv = a.preprocess(_images())
    ids = torch.tensor([a.vocab.encode("a red circle")] * 3)
    torch.testing.assert_close(a(ids, pixel_values=pv).logits, b(ids, pixel_values=pv).logits, rtol=0, atol=0)
    assert a.generate(pixel_values=pv, num_beams=2) == b.generate(pixel_values=pv, num_beams=2)
    # Same seed -> same weights; the checkpoint is self-contained (no torchvision download needed).
    out2 = build_tiny_cnn_lstm(tmp_path / "tiny2")
    # (Compare tensors, not bytes: safetensors' JSON header order is not stable across calls.)
    w1, w2 = load_file(str(out / "model.safetensors")), load_file(str(out2 / "model.safetensors"))
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)


def test_from_pretrained_rejects_other_directories(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="model.safetensors is missing|config.json is missing"):
        CnnLstmModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "vocab.json").write_text("[]")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotAvailableError, match="model_type is 'bert'"):
        CnnLstmModel.from_pretrained(tmp_path)


@pytest.mark.parametrize(("encoder", "feature_dim"), [("resnet50", 2048), ("densenet201", 1920)])
def test_torchvision_encoders_give_spatial_maps(encoder, feature_dim):
    torch.manual_seed(0)
    cfg = CnnLstmConfig(encoder=encoder, encoder_weights="none", attention=True, image_size=64, hidden_dim=32)
    model = CnnLstmModel(cfg, Vocabulary.build(CAPTIONS))
    feats = model.encode(model.preprocess(_images()[:1]))
    assert feats.shape == (1, 2 * 2, feature_dim)  # 64 px / 32 -> 2x2 positions
    assert not any(p.requires_grad for p in model.encoder.parameters())  # frozen by default


def test_imagenet_weights_offline_fail_fast_with_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match=r"ResNet50_Weights.IMAGENET1K_V2.*resnet50-.*\.pth"):
        CnnLstmModel(CnnLstmConfig(encoder="resnet50"), Vocabulary.build(CAPTIONS))
