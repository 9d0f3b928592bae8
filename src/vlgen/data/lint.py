"""`vlgen data lint DIR`: check the captions of a LoRA training set before a run spends hours on them (issue 18).

Errors (exit 1): a caption missing or empty; the trigger token (`trigger`) absent from a caption.
Warnings: the trigger more than once; a phrase of 2-5 words in at least half the captions (the subject's fixed
traits written into every caption, which the LoRA then ties to that phrase instead of the trigger); duplicate
captions; captions longer than the text encoder's window (77 CLIP tokens for SDXL, T5's 512 for Flux), naming
the words cut off; with a CLIP model, captions whose CLIPScore is below the set's median - 3 MAD.

DIR is an imagefolder (`metadata.jsonl`, caption column `text` or `caption_column`; a list of captions is
checked caption by caption) or a plain folder of images with same-name `.txt` sidecars (searched recursively,
as `vlgen data import folder` reads them). Every finding is one `LintFinding`, located at the file that holds
the caption (the sidecar, or `metadata.jsonl:LINE` with the image's file_name first in the message).

Tokenizer and CLIP are the only parts that load models; they are imported when asked for, so this module
(like the rest of vlgen.data) imports nothing heavy and nothing of vlgen but errors and data.

Example::

    from vlgen.data.lint import lint_captions

    report = lint_captions("data/dog", trigger="sks", clip_model="openai/clip-vit-large-patch14")
    for finding in report.findings:
        print(finding)        # data/dog/3.txt: error: no trigger 'sks' in the caption
    assert report.ok, f"{len(report.errors)} caption error(s)"
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlgen.data.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS
from vlgen.data.records import DEFAULT_CAPTION_COLUMN, METADATA_NAME, check_file_name, check_inside
from vlgen.errors import ConfigError, DataError, ImageLoadError, ModelNotAvailableError

DEFAULT_TOKENIZER = "openai/clip-vit-large-patch14"  # SDXL's first text encoder; its second has the same window
PHRASE_MIN_WORDS, PHRASE_MAX_WORDS = 2, 5
PHRASE_MIN_SHARE = 0.5  # "in at least half the captions"
OUTLIER_MADS = 3.0  # flag CLIPScore < median - 3 * MAD
OUTLIER_MIN_CAPTIONS = 5  # a median and MAD of fewer scores say nothing
SHOW_CUT_CHARS = 100  # the cut-off words shown in a finding's line (all of them in `details["cut"]`)

# Phrases may not start or end with one of these words: "photo of", "in a", "with the" are in half of almost any
# caption set and are not a subject's traits; "with long red hair" is reported as "long red hair" instead.
_STOPWORDS = (
    "a an the of in on at to for with without and or but nor by from as into onto over under near next behind "
    "is are was were be been being has have had it its this that these those his her hers their theirs he she "
    "they them him we us you your our my i me who whom which while"
)
STOPWORDS = frozenset(_STOPWORDS.split())

Level = Literal["error", "warning"]
# The checks, in the order a caption's findings are listed. `bad-row` and `image` are input problems met on the
# way (a metadata line that is not a usable row; an image CLIP could not read): errors, as training would stop.
CHECKS = ("bad-row", "missing", "trigger-missing", "trigger-repeated", "duplicate", "too-long", "image", "clip")
SET_CHECKS = ("phrase",)


@dataclass(frozen=True)
class LintFinding:
    """One problem: `check` (a name of CHECKS/SET_CHECKS), where it is, and `details` for machines."""

    level: Level
    check: str
    path: str  # the file holding the caption: a .txt sidecar, metadata.jsonl (with `line`), or DIR for set-level
    message: str
    line: int | None = None
    file_name: str | None = None  # the image, relative to DIR (None for set-level findings)
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.level}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "check": self.check,
            "path": self.path,
            "line": self.line,
            "file_name": self.file_name,
            "message": self.message,
            **self.details,
        }


@dataclass
class LintReport:
    dataset_dir: Path
    source: str  # "metadata" | "sidecars"
    n_images: int
    n_captions: int  # captions checked (a missing one counts: it is a finding)
    findings: list[LintFinding] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[LintFinding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[LintFinding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        """No errors (warnings do not fail a lint)."""
        return not self.errors

    def summary(self) -> str:
        return (
            f"{self.dataset_dir}: {self.n_captions} captions of {self.n_images} images; "
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        )

    def to_json(self) -> dict[str, Any]:
        """The `vlgen data lint --json` object."""
        return {
            "dir": str(self.dataset_dir),
            "source": self.source,
            "n_images": self.n_images,
            "n_captions": self.n_captions,
            "n_errors": len(self.errors),
            "n_warnings": len(self.warnings),
            "ok": self.ok,
            "findings": [f.to_json() for f in self.findings],
            "settings": self.settings,
        }


@dataclass
class _Caption:
    """One caption to check, where it came from, and the image it describes."""

    file_name: str  # image, relative to DIR
    image: Path | None
    text: str | None  # None or blank: missing
    path: str
    line: int | None = None
    why_missing: str = "caption is empty"

    @property
    def prefix(self) -> str:
        """What a message starts with: the image, when the location (metadata.jsonl:LINE) does not name it."""
        return f"{self.file_name}: " if self.line is not None else ""

    @property
    def name(self) -> str:
        """How another finding refers to this caption."""
        return f"{self.file_name} (line {self.line})" if self.line is not None else self.path


# ---------------------------------------------------------------------------------------------------- loading


def _metadata_captions(root: Path, caption_column: str) -> tuple[list[_Caption], list[LintFinding], int]:
    from vlgen.data.records import iter_metadata_lines
    from vlgen.data.validate import _missing_caption_column

    meta = str(root / METADATA_NAME)
    lines = list(iter_metadata_lines(root))
    if not lines:
        raise DataError("has no rows: nothing to lint", path=meta)
    missing_column = _missing_caption_column(lines, caption_column)
    if missing_column is not None:  # a wrong --caption-column: one line, not one finding per row
        raise DataError(missing_column, path=meta)
    items: list[_Caption] = []
    problems: list[LintFinding] = []
    images: set[str] = set()

    def bad(line: int, reason: str, file_name: str | None = None) -> None:
        prefix = f"{file_name}: " if file_name else ""
        problems.append(LintFinding("error", "bad-row", meta, f"{prefix}{reason}", line, file_name))

    for line, raw in lines:
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            bad(line, f"not a JSON row ({e}); `vlgen data validate` lists every problem of the file")
            continue
        if not isinstance(row, dict):
            bad(line, f"expected a JSON object, got {type(row).__name__}")
            continue
        try:
            file_name = check_file_name(row.get("file_name"))
        except DataError as e:
            bad(line, e.reason if "file_name" in row else "missing 'file_name'")
            continue
        images.add(file_name)
        image = root / file_name
        value = row.get(caption_column)
        values = value if isinstance(value, list) else [value]
        if not values:
            values = [None]
        for v in values:
            if v is not None and not isinstance(v, str):
                bad(line, f"caption column {caption_column!r} holds {type(v).__name__} {v!r}, expected text", file_name)
                continue
            why = f"no caption in column {caption_column!r}" if v is None else f"caption in {caption_column!r} is empty"
            items.append(_Caption(file_name, image, v, meta, line, why))
    return items, problems, len(images)


def _sidecar_captions(root: Path) -> tuple[list[_Caption], list[LintFinding], int]:
    items: list[_Caption] = []
    problems: list[LintFinding] = []
    images = [
        p
        for p in sorted(root.rglob("*"))
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    ]
    if not images:
        raise DataError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) and no {METADATA_NAME}: nothing to lint", path=str(root)
        )
    for img in images:
        rel = img.relative_to(root).as_posix()
        txt = img.with_suffix(".txt")
        try:
            check_inside(root, img)
        except DataError as e:
            problems.append(LintFinding("error", "bad-row", str(img), e.reason, None, rel))
            continue
        if not txt.is_file():
            items.append(
                _Caption(rel, img, None, str(txt), why_missing=f"caption missing: no {txt.name} beside {img.name}")
            )
            continue
        try:
            text = txt.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as e:
            problems.append(LintFinding("error", "bad-row", str(txt), f"not valid UTF-8 at byte {e.start}", None, rel))
            continue
        items.append(_Caption(rel, img, text.strip(), str(txt)))
    return items, problems, len(images)


def load_captions(
    dataset_dir: str | os.PathLike, caption_column: str = DEFAULT_CAPTION_COLUMN
) -> tuple[str, list[_Caption], list[LintFinding], int]:
    """(source, captions, problems met while reading, number of images) of DIR; DataError if there is nothing."""
    root = Path(dataset_dir)
    if not root.exists():
        raise DataError("dataset folder not found", path=str(root))
    if not root.is_dir():
        raise DataError(
            "is a file; expected a dataset folder (images with .txt captions, or a metadata.jsonl)", path=str(root)
        )
    if (root / METADATA_NAME).is_file():
        return ("metadata", *_metadata_captions(root, caption_column))
    return ("sidecars", *_sidecar_captions(root))


# ------------------------------------------------------------------------------------------------- the checks


def _trigger_pattern(trigger: str) -> re.Pattern[str]:
    """The trigger as a whole word (or words), any case: 'sks' matches 'sks,' and 'SKS' but not 'sksdog'."""
    body = r"\s+".join(re.escape(part) for part in trigger.split())  # "ohwx  man" is the trigger "ohwx man" too
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


WORD = re.compile(r"\w+(?:'\w+)*")


def words(text: str) -> list[str]:
    """Lower-cased words, punctuation stripped ("Red-hair, 1girl's" -> red, hair, 1girl's)."""
    return WORD.findall(text.lower())


def _segments(text: str, trigger_words: list[str]) -> list[list[str]]:
    """The caption's words split at each occurrence of the trigger (no phrase spans or contains it)."""
    w = words(text)
    if not trigger_words:
        return [w]
    n = len(trigger_words)
    segments, start, i = [], 0, 0
    while i <= len(w) - n:
        if w[i : i + n] == trigger_words:
            segments.append(w[start:i])
            start = i = i + n
        else:
            i += 1
    segments.append(w[start:])
    return [s for s in segments if s]


def _ngrams(segments: list[list[str]], n: int) -> set[tuple[str, ...]]:
    return {tuple(s[i : i + n]) for s in segments for i in range(len(s) - n + 1)}


def _contains(longer: tuple[str, ...], shorter: tuple[str, ...]) -> bool:
    n = len(shorter)
    return any(longer[i : i + n] == shorter for i in range(len(longer) - n + 1))


@dataclass(frozen=True)
class Phrase:
    words: tuple[str, ...]
    count: int  # captions containing it (each caption counted once)
    share: float  # count / captions

    @property
    def text(self) -> str:
        return " ".join(self.words)


def common_phrases(
    captions: Sequence[str],
    trigger: str | None = None,
    *,
    min_share: float = PHRASE_MIN_SHARE,
    min_words: int = PHRASE_MIN_WORDS,
    max_words: int = PHRASE_MAX_WORDS,
) -> list[Phrase]:
    """Maximal phrases of `min_words`-`max_words` words found in at least `min_share` of `captions` (and in 2).

    Each n-gram counts once per caption, after lower-casing and stripping punctuation, never spanning the trigger.
    Phrases that start or end with a STOPWORD are not reported. Of a phrase inside a longer reported phrase with
    the same count only the longer one is reported; and 5-word phrases that always occur together as one longer
    run ("woman with long red hair and green eyes") are reported as that run, not as its overlapping pieces.
    Sorted by share (highest first), then length (longest first).
    """
    n_captions = len(captions)
    if n_captions == 0:
        return []
    need = max(2, math.ceil(min_share * n_captions))
    trigger_words = words(trigger) if trigger else []
    segmented = [_segments(c, trigger_words) for c in captions]
    frequent: dict[tuple[str, ...], int] = {}
    for n in range(min_words, max_words + 1):
        counts = Counter(g for segs in segmented for g in _ngrams(segs, n))
        frequent.update({g: c for g, c in counts.items() if c >= need})
    # Longer than max_words only as a merge: an (n+1)-gram in exactly the captions of both its n-word halves.
    n, last = max_words, {g: c for g, c in frequent.items() if len(g) == max_words}
    while last:
        n += 1
        counts = Counter(g for segs in segmented for g in _ngrams(segs, n) if g[:-1] in last and g[1:] in last)
        last = {g: c for g, c in counts.items() if c == last[g[:-1]] == last[g[1:]]}
        frequent.update(last)
    candidates = [(g, c) for g, c in frequent.items() if g[0] not in STOPWORDS and g[-1] not in STOPWORDS]
    maximal = [
        (g, c) for g, c in candidates if not any(len(h) > len(g) and d == c and _contains(h, g) for h, d in candidates)
    ]
    phrases = [Phrase(g, c, c / n_captions) for g, c in maximal]
    return sorted(phrases, key=lambda p: (-p.count, -len(p.words), p.words))


@dataclass(frozen=True)
class TokenWindow:
    n_tokens: int  # with the special tokens the encoder adds (CLIP: <|startoftext|> ... <|endoftext|>)
    max_tokens: int
    cut: str  # the words past the window ("" when the caption fits)


def token_window(tokenizer: Any, caption: str, max_tokens: int | None = None) -> TokenWindow:
    """How many tokens `caption` is for `tokenizer` and which words fall past `max_tokens` (default: the
    tokenizer's model_max_length), the special tokens counted as the text encoder sees them."""
    max_tokens = int(max_tokens or tokenizer.model_max_length)
    n_special = tokenizer.num_special_tokens_to_add(pair=False)
    budget = max_tokens - n_special  # tokens of the caption itself that fit
    fast = bool(getattr(tokenizer, "is_fast", False))
    enc = tokenizer(caption, add_special_tokens=False, truncation=False, return_offsets_mapping=fast, verbose=False)
    ids = enc["input_ids"]
    if len(ids) <= budget:
        return TokenWindow(len(ids) + n_special, max_tokens, "")
    if fast:
        cut_at = enc["offset_mapping"][budget][0]
    else:  # slow tokenizers have no offsets: the longest whitespace-word prefix that fits (a word's punctuation
        # counts with it)
        spans = [m.span() for m in re.finditer(r"\S+", caption)]
        lo, hi = 0, len(spans)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            n = len(tokenizer(caption[: spans[mid - 1][1]], add_special_tokens=False, verbose=False)["input_ids"])
            lo, hi = (mid, hi) if n <= budget else (lo, mid - 1)
        cut_at = spans[lo][0] if lo < len(spans) else len(caption)

    # A word split by the window ("squ|are") is cut as a whole word: the encoder sees only part of it. Punctuation
    # is not a word: "circle|, blue" cuts "blue".
    def wordish(c: str) -> bool:
        return c.isalnum() or c in "'-_"

    while 0 < cut_at < len(caption) and wordish(caption[cut_at - 1]) and wordish(caption[cut_at]):
        cut_at -= 1
    return TokenWindow(len(ids) + n_special, max_tokens, caption[cut_at:].lstrip(" \t\n,.;:!?").rstrip())


def _tokenizer_folder(path: Path) -> Path:
    """`path`, or for a diffusers pipeline folder the tokenizer sub-folder with the widest window: SDXL's
    `tokenizer` (its `tokenizer_2` has the same 77), Flux's T5 `tokenizer_2` (512), SD3's T5 `tokenizer_3`."""
    if (path / "tokenizer_config.json").is_file():
        return path
    windows = {}
    for sub in sorted(path.glob("tokenizer*/tokenizer_config.json")):
        try:
            windows[sub.parent] = float(json.loads(sub.read_text(encoding="utf-8")).get("model_max_length") or 0)
        except (OSError, ValueError, AttributeError):
            continue
    usable = {p: w for p, w in windows.items() if w <= 1_000_000} or windows
    return max(usable, key=lambda p: usable[p]) if usable else path  # max keeps the first of equals


def load_tokenizer(ref: str | os.PathLike) -> Any:
    """A tokenizer from a folder or hub id (only its tokenizer files are fetched); for a diffusers pipeline the
    tokenizer sub-folder with the widest window. One-line error offline, naming --tokenizer."""
    from transformers import AutoTokenizer

    from vlgen.hub import resolve_model

    try:
        resolved = resolve_model(
            ref, what="tokenizer", option="--tokenizer", allow_patterns=["*.json", "*.txt", "*.model"]
        )
    except ModelNotAvailableError as e:
        raise ModelNotAvailableError(f"{str(e).rstrip('.')}, or --tokenizer none to skip the length check") from None
    path = _tokenizer_folder(resolved.path)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelNotAvailableError(f"tokenizer '{ref}' (--tokenizer) could not be loaded: {first}") from None
    if tok.model_max_length > 1_000_000:  # transformers' "no limit" sentinel (1e30)
        raise ConfigError(f"tokenizer '{ref}' (--tokenizer) sets no model_max_length, so it has no window to check")
    return tok


def mad_outliers(scores: Sequence[float], k: float = OUTLIER_MADS) -> tuple[float, float, float, list[int]]:
    """(median, MAD, threshold, indices of scores < median - k * MAD). MAD is the raw median absolute deviation."""
    med = statistics.median(scores)
    mad = statistics.median(abs(s - med) for s in scores)
    threshold = med - k * mad
    return med, mad, threshold, [i for i, s in enumerate(scores) if s < threshold]


def _clip_scores(
    items: list[_Caption], clip_model: Any, device: str, max_pixels: int, batch_size: int = 16, progress: bool = False
) -> tuple[dict[int, float], list[tuple[int, LintFinding]], dict[str, Any]]:
    """{index into items: CLIPScore} of every caption whose image decodes, the images that do not, settings.

    Hessel et al.'s reference-free CLIPScore (vlgen.metrics.clipscore: the caption prefixed "A photo depicts ",
    2.5 * max(cos, 0)), as `vlgen evaluate captions --clip-model` reports it. The flagged set does not depend on
    the scale (median - 3 MAD scales with it) but does on the prefix."""
    import torch

    from vlgen.data.images import load_image
    from vlgen.metrics.clipscore import CLIPSCORE_PREFIX, DEFINITION, clipscore_from_embeddings
    from vlgen.metrics.image.clip import ClipBundle, clip_image_embeddings, clip_text_embeddings, load_clip

    clip = clip_model if isinstance(clip_model, ClipBundle) else load_clip(str(clip_model), device=device)
    side = int(clip.model.config.vision_config.image_size)
    # clip_text_embeddings counts over-long captions by tokenizing without truncation, which makes transformers log
    # "Token indices sequence length is longer than ..." once; the too-long check reports those captions already.
    warned = getattr(clip.processor.tokenizer, "deprecation_warnings", None)
    if isinstance(warned, dict):
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True
    scores: dict[int, float] = {}
    problems: list[tuple[int, LintFinding]] = []
    last: tuple[str, Any] = ("", None)  # the captions of one image (a list column) are consecutive: decode once
    todo = [i for i, it in enumerate(items) if it.text and it.image is not None]
    truncated = 0
    starts: Any = range(0, len(todo), batch_size)
    if progress:
        from vlgen.progress import track

        starts = track(starts, f"CLIPScore ({batch_size} captions a step)")
    for start in starts:
        batch, images = [], []
        for i in todo[start : start + batch_size]:
            it = items[i]
            if it.file_name != last[0]:
                try:
                    last = (it.file_name, load_image(it.image, max_pixels, input_size=(side, side)))  # type: ignore[arg-type]
                except ImageLoadError as e:
                    last = (it.file_name, None)
                    message = f"{it.prefix}image {it.file_name!r}: {e.reason}"
                    problems.append((i, LintFinding("error", "image", it.path, message, it.line, it.file_name)))
            if last[1] is not None:
                batch.append(i)
                images.append(last[1])
        if not batch:
            continue
        text_emb, n_cut = clip_text_embeddings(clip, [CLIPSCORE_PREFIX + items[i].text for i in batch])  # type: ignore[operator]
        truncated += n_cut
        with torch.inference_mode():
            s = clipscore_from_embeddings(clip_image_embeddings(clip, images, batch_size=batch_size), text_emb)
        scores.update(zip(batch, s.tolist(), strict=True))
    settings = {
        "model": clip.name,
        "source": clip.source,
        "definition": f"{DEFINITION['CLIPScore']}; flagged below median - 3 * MAD",
        "max_tokens": clip.max_text_tokens,
        "truncated_captions": truncated,
    }
    return scores, problems, settings


# ------------------------------------------------------------------------------------------------------ lint


def _short(text: str, limit: int = SHOW_CUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    head = text[:limit].rsplit(" ", 1)[0]
    return f"{head} ... ({len(text.split()) - len(head.split())} more words)"


def lint_captions(
    dataset_dir: str | os.PathLike,
    *,
    trigger: str | None = None,
    caption_column: str = DEFAULT_CAPTION_COLUMN,
    tokenizer: Any = DEFAULT_TOKENIZER,
    clip_model: Any = None,
    device: str = "cpu",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
) -> LintReport:
    """Check every caption of DIR; never raises for caption problems (they are findings), only when there is
    nothing to check (DataError) or a model cannot be loaded (ModelNotAvailableError).

    `tokenizer`: a folder, hub id or loaded tokenizer whose model_max_length is the window (None: no length check).
    `clip_model`: a folder, hub id or `vlgen.metrics.image.clip.ClipBundle` (None: no CLIPScore check).
    `progress`: a progress bar on stderr while CLIP scores the images.

    Example::

        import vlgen

        report = vlgen.lint_captions("data/ddb", trigger=None, tokenizer="openai/clip-vit-large-patch14")
        for finding in report.findings:
            print(finding)  # data/ddb/metadata.jsonl: warning: phrase 'large yellow' in 6 of 12 captions (50%): ...
        print(report.summary(), "OK" if report.ok else f"{len(report.errors)} error(s)")
    """
    if trigger is not None and not words(trigger):
        raise ConfigError(f"--trigger {trigger!r}: the trigger must contain a word")
    root = Path(dataset_dir)
    source, items, problems, n_images = load_captions(root, caption_column)
    tok = None
    tok_name = None
    if tokenizer is not None:
        tok_name = str(tokenizer) if isinstance(tokenizer, str | os.PathLike) else type(tokenizer).__name__
        tok = load_tokenizer(tokenizer) if isinstance(tokenizer, str | os.PathLike) else tokenizer

    per_item: dict[int, list[LintFinding]] = defaultdict(list)

    def add(i: int, level: Level, check: str, message: str, **details: Any) -> None:
        it = items[i]
        per_item[i].append(LintFinding(level, check, it.path, it.prefix + message, it.line, it.file_name, details))

    present = [i for i, it in enumerate(items) if it.text and it.text.strip()]
    pattern = _trigger_pattern(trigger) if trigger else None
    first_with: dict[str, int] = {}
    for i, it in enumerate(items):
        if i not in present:
            add(i, "error", "missing", it.why_missing)
            continue
        text = it.text or ""
        if pattern is not None:
            count = len(pattern.findall(text))
            if count == 0:
                add(i, "error", "trigger-missing", f"no trigger {trigger!r} in the caption", count=0)
            elif count > 1:
                add(
                    i, "warning", "trigger-repeated", f"trigger {trigger!r} {count} times (once is enough)", count=count
                )
        key = " ".join(text.lower().split())
        if key in first_with:
            first = items[first_with[key]]
            add(i, "warning", "duplicate", f"duplicate caption: same as {first.name}", same_as=first.file_name)
        else:
            first_with[key] = i
        if tok is not None:
            w = token_window(tok, text)
            if w.cut:
                add(
                    i,
                    "warning",
                    "too-long",
                    f"{w.n_tokens} tokens, over the text encoder's {w.max_tokens}-token window; "
                    f"cut off: {_short(w.cut)!r}",
                    tokens=w.n_tokens,
                    max_tokens=w.max_tokens,
                    cut=w.cut,
                )

    settings: dict[str, Any] = {
        "trigger": trigger,
        "caption_column": caption_column if source == "metadata" else None,
        "tokenizer": None if tok is None else {"name": tok_name, "max_tokens": int(tok.model_max_length)},
        "phrase": {"min_words": PHRASE_MIN_WORDS, "max_words": PHRASE_MAX_WORDS, "min_share": PHRASE_MIN_SHARE},
        "clip": None,
    }
    if clip_model is not None:
        scores, image_problems, clip_settings = _clip_scores(items, clip_model, device, max_pixels, progress=progress)
        for i, f in image_problems:
            per_item[i].append(f)
        settings["clip"] = clip_settings
        index = list(scores)
        med, mad, threshold, low = mad_outliers([scores[i] for i in index]) if scores else (0.0, 0.0, 0.0, [])
        if len(scores) < OUTLIER_MIN_CAPTIONS:
            clip_settings["skipped"] = f"{len(scores)} scored captions; the outlier check needs {OUTLIER_MIN_CAPTIONS}"
        elif mad == 0:  # more than half the scores are equal (copies): no spread to measure outliers against
            clip_settings["skipped"] = "MAD is 0: more than half the captions score the same"
        else:
            clip_settings.update(median=med, mad=mad, threshold=threshold)
            for j in low:
                s = scores[index[j]]
                add(
                    index[j],
                    "warning",
                    "clip",
                    f"CLIPScore {s:.3f} below the set's median {med:.3f} - 3 x MAD ({mad:.3f}) = {threshold:.3f}: "
                    "does the caption describe the image?",
                    score=s,
                    median=med,
                    mad=mad,
                    threshold=threshold,
                )

    order = {c: k for k, c in enumerate(CHECKS)}
    findings = list(problems)
    for i in sorted(per_item):
        findings.extend(sorted(per_item[i], key=lambda f: order[f.check]))
    where = str(root / METADATA_NAME) if source == "metadata" else str(root)
    about = f" instead of {trigger!r}" if trigger else " instead of the trigger"
    for p in common_phrases([items[i].text or "" for i in present], trigger):
        findings.append(
            LintFinding(
                "warning",
                "phrase",
                where,
                f"phrase {p.text!r} in {p.count} of {len(present)} captions ({p.share:.0%}): "
                f"a trait written into every caption is learnt under this phrase{about}",
                details={"phrase": p.text, "count": p.count, "share": p.share},
            )
        )
    return LintReport(root, source, n_images, len(items), findings, settings)


__all__ = [
    "CHECKS",
    "DEFAULT_TOKENIZER",
    "SET_CHECKS",
    "LintFinding",
    "LintReport",
    "Phrase",
    "TokenWindow",
    "common_phrases",
    "lint_captions",
    "load_captions",
    "load_tokenizer",
    "mad_outliers",
    "token_window",
    "words",
]
