"""CNN-LSTM captioner: a CNN encoder and an LSTM decoder, optionally with soft attention.

Read top to bottom: vocabulary -> encoder -> decoder (Show and Tell / Show, Attend and Tell) -> decoding
(greedy and beam search) -> save/load. The encoder is a torchvision ResNet-50 or DenseNet-201 (ImageNet
weights by default, frozen), as in the first write-up; `tiny` is a small conv stack for tests and the
offline demo.

Shapes: B batch, T caption length, L spatial positions (H'*W'), F encoder channels, E embedding, H hidden,
V vocabulary. Without attention the decoder sees the mean-pooled feature (B, F) at every step ("par-inject");
with attention it attends over the (B, L, F) map at every step (Xu et al. 2015, eq. 4-6, with the gating
scalar beta and the doubly stochastic regulariser sum_i (1 - sum_t alpha_ti)^2).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vlgen.captioning.base import Captioner
from vlgen.captioning.cnn_lstm_config import ENCODERS as ENCODERS  # re-exported
from vlgen.captioning.cnn_lstm_config import MODEL_TYPE, CnnLstmConfig
from vlgen.errors import ConfigError, ModelNotAvailableError
from vlgen.fileio import atomic_file, atomic_write_text

CONFIG_NAME = "config.json"
VOCAB_NAME = "vocab.json"
WEIGHTS_NAME = "model.safetensors"
# torchvision weight enums by encoder name; "none" means random init.
ENCODER_WEIGHTS = {"resnet50": "ResNet50_Weights.IMAGENET1K_V2", "densenet201": "DenseNet201_Weights.IMAGENET1K_V1"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


# ----------------------------------------------------------------------------------------------- vocabulary
def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation, the usual Flickr8k/COCO preprocessing."""
    return _TOKEN_RE.findall(text.lower())


@dataclass
class Vocabulary:
    """Word-level vocabulary built from the training split. Ids 0-3 are <pad>, <bos>, <eos>, <unk>."""

    itos: list[str]
    PAD, BOS, EOS, UNK = 0, 1, 2, 3
    SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

    def __post_init__(self) -> None:
        if tuple(self.itos[:4]) != self.SPECIALS:
            raise ConfigError(f"vocabulary must start with {self.SPECIALS}, got {self.itos[:4]}")
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> Vocabulary:
        counts = Counter(tok for c in captions for tok in tokenize(c))
        # Sorted by (-count, word) so the same captions always give the same ids.
        words = [w for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count]
        return cls(list(cls.SPECIALS) + [w for w in words if w not in cls.SPECIALS])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """<bos> w1 .. wn <eos>, truncated so that the total is at most max_length."""
        ids = [self.stoi.get(t, self.UNK) for t in tokenize(text)]
        if max_length is not None:
            ids = ids[: max(max_length - 2, 0)]
        return [self.BOS, *ids, self.EOS]

    def decode(self, ids: Iterable[int]) -> str:
        words = []
        for i in ids:
            i = int(i)
            if i == self.EOS:
                break
            if i in (self.PAD, self.BOS):
                continue
            words.append(self.itos[i] if 0 <= i < len(self.itos) else "<unk>")
        # Attach punctuation to the previous word.
        text = " ".join(words)
        return re.sub(r" ([.,!?;:])", r"\1", text)


# ----------------------------------------------------------------------------------------------- config
# CnnLstmConfig (encoder, attention, embed_dim, hidden_dim, ...) is in cnn_lstm_config.py, importable without torch
# for the CLI; imported here so `from vlgen.captioning.cnn_lstm import CnnLstmConfig` keeps working.


# ----------------------------------------------------------------------------------------------- encoder
class TinyEncoder(nn.Module):
    """A small conv stack (stride 2 per block) for tests and the CPU demo: (B,3,S,S) -> (B,C,S/2^n,S/2^n).

    Two choices for a CNN trained from scratch on small data:
    - GroupNorm rather than BatchNorm: with small batches BatchNorm's running statistics lag behind the
      weights and make eval-mode (validation, captioning) outputs swing from epoch to epoch. Groups of 8
      channels, not 1: a one-channel group removes that channel's mean, i.e. the colour of a flat region.
    - Coordinate channels (CoordConv, Liu et al. 2018): x and y in [-1, 1] are appended to the input, so
      features know where they are - captions that say "to the left of" / "above" need that, and a small
      network with zero padding learns it only slowly.
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3 + 2
        for c in channels:
            norm = nn.GroupNorm(max(1, c // 8), c)
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), norm, nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.out_channels = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        ys = torch.linspace(-1, 1, H, device=x.device, dtype=x.dtype).view(1, 1, H, 1).expand(B, 1, H, W)
        xs = torch.linspace(-1, 1, W, device=x.device, dtype=x.dtype).view(1, 1, 1, W).expand(B, 1, H, W)
        return self.features(torch.cat([x, xs, ys], dim=1))  # (B, 5, H, W) -> (B, C, H', W')


def build_encoder(config: CnnLstmConfig, load_weights: bool = True) -> tuple[nn.Module, int]:
    """The CNN trunk without its classifier, returning a spatial map (B, F, H', W'); and F."""
    if config.encoder == "tiny":
        enc = TinyEncoder(config.tiny_channels)
        return enc, enc.out_channels
    import torchvision

    state = None
    if load_weights and config.encoder_weights == "default":
        from vlgen.hub import resolve_torchvision_weights

        enum_name, member = ENCODER_WEIGHTS[config.encoder].split(".")
        state = resolve_torchvision_weights(
            getattr(torchvision.models, enum_name)[member],
            instead="pass `--encoder-weights none` to train the encoder from a random init",
        )
    if config.encoder == "resnet50":
        net = torchvision.models.resnet50(weights=None)
        if state is not None:
            net.load_state_dict(state)
        trunk = nn.Sequential(*list(net.children())[:-2])  # drop avgpool + fc -> (B, 2048, H/32, W/32)
        return trunk, 2048
    net = torchvision.models.densenet201(weights=None)
    if state is not None:
        net.load_state_dict(state)
    trunk = nn.Sequential(net.features, nn.ReLU(inplace=False))  # (B, 1920, H/32, W/32)
    return trunk, 1920


# ----------------------------------------------------------------------------------------------- decoder
class SoftAttention(nn.Module):
    """Additive attention (Bahdanau) over L positions: scores = w^T tanh(W_f f + W_h h)."""

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.feat_proj = nn.Linear(feature_dim, attention_dim)
        self.hidden_proj = nn.Linear(hidden_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)

    def forward(self, feats: torch.Tensor, feats_proj: torch.Tensor, h: torch.Tensor):
        # feats (B, L, F), feats_proj (B, L, A) precomputed once per caption, h (B, H)
        e = self.score(torch.tanh(feats_proj + self.hidden_proj(h).unsqueeze(1))).squeeze(-1)  # (B, L)
        alpha = e.softmax(dim=-1)
        context = (alpha.unsqueeze(-1) * feats).sum(dim=1)  # (B, F)
        return context, alpha


class LstmDecoder(nn.Module):
    def __init__(self, config: CnnLstmConfig, feature_dim: int) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=Vocabulary.PAD)
        self.init_h = nn.Linear(feature_dim, config.hidden_dim)
        self.init_c = nn.Linear(feature_dim, config.hidden_dim)
        self.cell = nn.LSTMCell(config.embed_dim + feature_dim, config.hidden_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.hidden_dim, config.vocab_size)
        if config.attention:
            self.attention = SoftAttention(feature_dim, config.hidden_dim, config.attention_dim)
            self.f_beta = nn.Linear(config.hidden_dim, feature_dim)  # gate on the context (Xu et al. 4.2.1)

    def init_state(self, feats: torch.Tensor):
        """feats (B, L, F) -> decoder state: h, c (B, H) and what attention reuses every step."""
        mean = feats.mean(dim=1)  # (B, F)
        h, c = torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))
        proj = self.attention.feat_proj(feats) if self.config.attention else None
        return h, c, mean, proj

    def step(self, tokens: torch.Tensor, feats, mean, proj, h, c):
        """One decoding step. tokens (B,) -> logits (B, V), new h, c, alpha (B, L) or None."""
        if self.config.attention:
            context, alpha = self.attention(feats, proj, h)
            context = torch.sigmoid(self.f_beta(h)) * context
        else:
            context, alpha = mean, None
        h, c = self.cell(torch.cat([self.embed(tokens), context], dim=-1), (h, c))
        return self.out(self.dropout(h)), h, c, alpha

    def forward(self, feats: torch.Tensor, input_ids: torch.Tensor):
        """Teacher forcing. feats (B, L, F), input_ids (B, T) starting with <bos> -> logits (B, T, V), alphas."""
        h, c, mean, proj = self.init_state(feats)
        logits, alphas = [], []
        for t in range(input_ids.shape[1]):
            step_logits, h, c, alpha = self.step(input_ids[:, t], feats, mean, proj, h, c)
            logits.append(step_logits)
            if alpha is not None:
                alphas.append(alpha)
        return torch.stack(logits, dim=1), (torch.stack(alphas, dim=1) if alphas else None)  # (B,T,V), (B,T,L)


# ----------------------------------------------------------------------------------------------- model
@dataclass
class CnnLstmOutput:
    loss: torch.Tensor | None
    logits: torch.Tensor  # (B, T-1, V): predictions for input_ids[:, 1:]
    alphas: torch.Tensor | None  # (B, T-1, L) attention weights, when attention is on


class CnnLstmModel(nn.Module):
    def __init__(self, config: CnnLstmConfig, vocab: Vocabulary, load_encoder_weights: bool = True) -> None:
        super().__init__()
        if config.vocab_size != len(vocab):
            config.vocab_size = len(vocab)
        self.config = config
        self.vocab = vocab
        self.encoder, self.feature_dim = build_encoder(config, load_weights=load_encoder_weights)
        if config.freeze_encoder:
            self.encoder.requires_grad_(False)
        self.decoder = LstmDecoder(config, self.feature_dim)

    # -- images -> features
    def preprocess(self, images: Sequence) -> torch.Tensor:
        """PIL RGB images -> pixel_values (B, 3, S, S), resized and ImageNet-normalised."""
        from torchvision.transforms import v2

        tf = v2.Compose(
            [
                v2.ToImage(),
                v2.Resize((self.config.image_size, self.config.image_size), antialias=True),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )
        return torch.stack([tf(im) for im in images])

    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, 3, S, S) -> features (B, L, F). Frozen encoders run in eval mode without grad."""
        if self.config.freeze_encoder:
            self.encoder.eval()
            with torch.no_grad():
                fmap = self.encoder(pixel_values)
        else:
            fmap = self.encoder(pixel_values)
        return fmap.flatten(2).transpose(1, 2)  # (B, F, H', W') -> (B, L, F)

    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> CnnLstmOutput:
        """input_ids (B, T) = <bos> ... <eos> <pad>*; labels default to input_ids shifted (pads ignored)."""
        feats = self._features(pixel_values, features)
        logits, alphas = self.decoder(feats, input_ids[:, :-1])
        if labels is None:
            labels = input_ids[:, 1:].masked_fill(input_ids[:, 1:] == Vocabulary.PAD, -100)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        if alphas is not None and self.config.alpha_c > 0:
            mask = (labels != -100).unsqueeze(-1).float()  # (B, T-1, 1): attention only counts on real steps
            loss = loss + self.config.alpha_c * ((1.0 - (alphas * mask).sum(dim=1)) ** 2).mean()
        return CnnLstmOutput(loss=loss, logits=logits, alphas=alphas)

    def _features(self, pixel_values, features) -> torch.Tensor:
        if features is not None:
            return features
        if pixel_values is None:
            raise ValueError("pass pixel_values (B, 3, S, S) or precomputed features (B, L, F)")
        return self.encode(pixel_values)

    # -- decoding
    @torch.no_grad()
    def generate(
        self,
        pixel_values: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        num_beams: int = 1,
        max_new_tokens: int | None = None,
        length_penalty: float = 1.0,
    ) -> list[list[int]]:
        """Token ids per image (without <bos>/<eos>). num_beams=1 is greedy decoding.

        Beam hypotheses are ranked by sum(log p) / length**length_penalty (as transformers does), so
        length_penalty=0 ranks by raw log-probability and larger values favour longer captions.
        """
        was_training = self.training
        self.eval()
        try:
            feats = self._features(pixel_values, features)
            max_new = max_new_tokens or self.config.max_length
            if num_beams <= 1:
                return self._greedy(feats, max_new)
            return [self._beam(feats[i : i + 1], num_beams, max_new, length_penalty) for i in range(feats.shape[0])]
        finally:
            self.train(was_training)

    def _step_logprobs(self, tokens, feats, mean, proj, h, c):
        """Decoder step for generation: <pad> and <bos> can never be produced."""
        logits, h, c, _ = self.decoder.step(tokens, feats, mean, proj, h, c)
        logits[:, [Vocabulary.PAD, Vocabulary.BOS]] = float("-inf")
        return logits.log_softmax(dim=-1), h, c

    def _greedy(self, feats: torch.Tensor, max_new: int) -> list[list[int]]:
        B = feats.shape[0]
        h, c, mean, proj = self.decoder.init_state(feats)
        tokens = torch.full((B,), Vocabulary.BOS, dtype=torch.long, device=feats.device)
        out = [[] for _ in range(B)]
        done = torch.zeros(B, dtype=torch.bool, device=feats.device)
        for _ in range(max_new):
            logp, h, c = self._step_logprobs(tokens, feats, mean, proj, h, c)
            tokens = logp.argmax(dim=-1)
            for i in range(B):
                if not done[i] and tokens[i].item() != Vocabulary.EOS:
                    out[i].append(tokens[i].item())
            done |= tokens == Vocabulary.EOS
            if done.all():
                break
        return out

    def _beam(self, feats: torch.Tensor, K: int, max_new: int, length_penalty: float) -> list[int]:
        """Beam search for one image. feats (1, L, F); the K beams run as a batch of K."""
        h, c, mean, proj = self.decoder.init_state(feats)
        h, c, mean = h.expand(K, -1), c.expand(K, -1), mean.expand(K, -1)
        feats_k = feats.expand(K, -1, -1)
        proj = proj.expand(K, -1, -1) if proj is not None else None
        tokens = torch.full((K,), Vocabulary.BOS, dtype=torch.long, device=feats.device)
        # Only beam 0 is live at the start, so the first step doesn't pick K copies of one token.
        scores = torch.full((K,), float("-inf"), device=feats.device)
        scores[0] = 0.0
        seqs: list[list[int]] = [[] for _ in range(K)]
        finished: list[tuple[float, list[int]]] = []
        for _ in range(max_new):
            logp, h, c = self._step_logprobs(tokens, feats_k, mean, proj, h, c)  # logp (K, V)
            V = logp.shape[-1]
            cand = (scores.unsqueeze(1) + logp).view(-1)  # (K*V,)
            top_scores, top_idx = cand.topk(min(2 * K, cand.numel()))
            new_beams, new_scores = [], []
            for rank, (s, idx) in enumerate(zip(top_scores.tolist(), top_idx.tolist(), strict=True)):
                if s == float("-inf") or len(new_beams) == K:
                    break
                beam, tok = divmod(idx, V)
                if tok == Vocabulary.EOS:
                    # As in transformers: an <eos> only finishes a hypothesis when it ranks among the top K,
                    # so num_beams=1 is exactly greedy decoding.
                    if rank < K:
                        length = len(seqs[beam]) + 1  # counts <eos>, like transformers
                        finished.append((s / (length**length_penalty), seqs[beam]))
                else:
                    new_beams.append((beam, tok))
                    new_scores.append(s)
            # early_stopping=True semantics: stop once K hypotheses have finished.
            if len(finished) >= K or not new_beams:
                break
            idx_beam = torch.tensor([b for b, _ in new_beams], device=feats.device)
            tokens = torch.tensor([t for _, t in new_beams], device=feats.device)
            seqs = [seqs[b] + [t] for b, t in new_beams]
            scores = torch.tensor(new_scores, device=feats.device)
            h, c = h[idx_beam], c[idx_beam]
            k = len(new_beams)
            if k < K:  # fewer live beams than K: pad with dead ones
                pad = K - k
                tokens = torch.cat([tokens, tokens.new_full((pad,), Vocabulary.PAD)])
                scores = torch.cat([scores, scores.new_full((pad,), float("-inf"))])
                h, c = torch.cat([h, h[:1].expand(pad, -1)]), torch.cat([c, c[:1].expand(pad, -1)])
                seqs += [[] for _ in range(pad)]
        if not finished:  # hit max length: rank live beams the same way
            finished = [
                (s / (len(q) ** length_penalty if q else 1.0), q)
                for s, q in zip(scores.tolist(), seqs, strict=True)
                if s != float("-inf")
            ]
        return max(finished, key=lambda x: x[0])[1]

    # -- persistence (safetensors + json; nothing pickled)
    def save_pretrained(self, out_dir: str | Path) -> Path:
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / CONFIG_NAME, json.dumps(asdict(self.config), indent=2) + "\n")
        atomic_write_text(out / VOCAB_NAME, json.dumps(self.vocab.itos, ensure_ascii=False) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_file(out / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str | torch.device = "cpu") -> CnnLstmModel:
        from safetensors.torch import load_file

        path = Path(path)
        for name in (CONFIG_NAME, VOCAB_NAME, WEIGHTS_NAME):
            if not (path / name).is_file():
                raise ModelNotAvailableError(f"{path} is not a vlgen CNN-LSTM checkpoint: {name} is missing")
        raw = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
        if raw.get("model_type") != MODEL_TYPE:
            raise ModelNotAvailableError(f"{path / CONFIG_NAME}: model_type is {raw.get('model_type')!r}")
        config = CnnLstmConfig(**raw)
        vocab = Vocabulary(json.loads((path / VOCAB_NAME).read_text(encoding="utf-8")))
        model = cls(config, vocab, load_encoder_weights=False)  # the checkpoint holds the encoder weights too
        model.load_state_dict(load_file(str(path / WEIGHTS_NAME), device=str(map_location)))
        return model.eval()  # like transformers: loaded models start in eval mode


def is_cnn_lstm_checkpoint(path: str | Path) -> bool:
    cfg = Path(path) / CONFIG_NAME
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("model_type") == MODEL_TYPE
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


TINY_CAPTIONS = (
    "a red circle",
    "a blue square",
    "two green triangles",
    "a small yellow circle above a red square",
)


def build_tiny_cnn_lstm(out: str | Path, seed: int = 0, attention: bool = True) -> Path:
    """Tiny random CNN-LSTM (tiny encoder, attention on) saved like a trained checkpoint; for tests."""
    torch.manual_seed(seed)
    vocab = Vocabulary.build(TINY_CAPTIONS)
    config = CnnLstmConfig(
        encoder="tiny",
        encoder_weights="none",
        freeze_encoder=False,
        attention=attention,
        image_size=32,
        embed_dim=16,
        hidden_dim=32,
        attention_dim=16,
        tiny_channels=[8, 16],
        max_length=12,
    )
    return CnnLstmModel(config, vocab).save_pretrained(out)


# ----------------------------------------------------------------------------------------------- captioner
class CnnLstmCaptioner(Captioner):
    """The `Captioner` face of `CnnLstmModel`. With a frozen encoder it can train on cached features."""

    family = "cnn-lstm"

    def __init__(self, model: CnnLstmModel) -> None:
        self.model = model

    @classmethod
    def create(cls, captions: Iterable[str], min_count: int = 1, **config: Any) -> CnnLstmCaptioner:
        """A new, untrained captioner whose vocabulary is built from the training captions."""
        return cls(CnnLstmModel(CnnLstmConfig(**config), Vocabulary.build(captions, min_count=min_count)))

    @classmethod
    def load(cls, ref: str | Path | None = None, device: str | torch.device = "cpu") -> CnnLstmCaptioner:
        if ref is None:
            raise ConfigError("a CNN-LSTM captioner has no published checkpoint: pass a trained model directory")
        from vlgen.hub import resolve_model

        path = resolve_model(ref, what="CNN-LSTM captioner").path
        return cls(CnnLstmModel.from_pretrained(path).to(device))

    @property
    def vocab(self) -> Vocabulary:
        return self.model.vocab

    @property
    def input_size(self) -> tuple[int, int]:
        return self.model.config.image_size, self.model.config.image_size  # preprocess() resizes to S x S

    @property
    def supports_feature_cache(self) -> bool:
        return self.model.config.freeze_encoder

    def feature_cache_key(self) -> dict:
        """What the cached features depend on (besides the images)."""
        cfg = self.model.config
        return {
            "encoder": cfg.encoder,
            "encoder_weights": cfg.encoder_weights,
            "image_size": cfg.image_size,
            "tiny_channels": cfg.tiny_channels if cfg.encoder == "tiny" else None,
        }

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(B, L, F) encoder features, as cached by the trainer."""
        return self.model.encode(self.model.preprocess(images).to(self.device))

    def _input_ids(self, captions: Sequence[str], max_length: int) -> torch.Tensor:
        ids = [self.vocab.encode(c, max_length=max_length) for c in captions]
        T = max(map(len, ids))
        return torch.tensor([x + [Vocabulary.PAD] * (T - len(x)) for x in ids])  # (B, T)

    def collate(self, images: Sequence[Image.Image], captions: Sequence[str], max_length: int) -> dict:
        return {"pixel_values": self.model.preprocess(images), "input_ids": self._input_ids(captions, max_length)}

    def collate_features(self, features: torch.Tensor, captions: Sequence[str], max_length: int) -> dict:
        return {"features": features, "input_ids": self._input_ids(captions, max_length)}

    def loss(self, batch: dict) -> torch.Tensor:
        return self.model(**batch).loss

    def generate(
        self, images: Sequence[Image.Image], num_beams: int = 1, max_new_tokens: int = 30, **generate_kwargs: Any
    ) -> list[str]:
        pv = self.model.preprocess(images).to(self.device)
        ids = self.model.generate(
            pixel_values=pv, num_beams=num_beams, max_new_tokens=max_new_tokens, **generate_kwargs
        )
        return [self.vocab.decode(x) for x in ids]

    def generate_from_features(self, features: torch.Tensor, num_beams: int = 1, max_new_tokens: int = 30) -> list[str]:
        ids = self.model.generate(features=features, num_beams=num_beams, max_new_tokens=max_new_tokens)
        return [self.vocab.decode(x) for x in ids]

    def save(self, out_dir: str | Path) -> Path:
        return self.model.save_pretrained(out_dir)

    def enable_gradient_checkpointing(self) -> bool:
        return False  # an LSTM unrolled over ~20 steps is small; nothing to gain
