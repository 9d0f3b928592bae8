"""The coco-caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, SPICE) exactly as pycocoevalcap computes them.

We reuse pycocoevalcap's own scorers for the arithmetic (so values are theirs by construction) and only
change how the two Java programs are driven, which is where COCOEvalCap spends its time:

* PTB tokenization runs once for predictions and references together (COCOEvalCap starts the JVM twice),
  reading stdin instead of a temp file written into site-packages.
* METEOR runs in one long-lived JVM per process (startup + paraphrase table take seconds: cold vs warm in
  benchmarks/README.md), and its SCORE lines are pipelined (COCOEvalCap waits for each reply before sending
  the next line). It works in a thread while BLEU, ROUGE-L and CIDEr are computed in Python.
* SPICE is only run when the Stanford CoreNLP jars are already there: pycocoevalcap's `Spice()` would
  otherwise start a 400 MB download (and hang offline).

`pycocoevalcap`'s "CIDEr" is CIDEr-D (Vedantam et al. 2015: sigma=6 length penalty, clipped counts, x10).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from vlgen.errors import VlgenError

COCO_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")

# pycocoevalcap/tokenizer/ptbtokenizer.py: tokens dropped after tokenization (kept verbatim for identity;
# note "-LRB-" never matches since the tokenizer lowercases - that is pycocoevalcap's behaviour too).
PUNCTUATIONS = {
    "''",
    "'",
    "``",
    "`",
    "-LRB-",
    "-RRB-",
    "-LCB-",
    "-RCB-",
    ".",
    "?",
    "!",
    ",",
    ":",
    "-",
    "--",
    "...",
    ";",
}

# Characters Java's PTBTokenizer treats as line ends: they would shift every following line, so they become
# spaces (pycocoevalcap only replaces "\n" and misaligns captions on the others).
_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


class JavaNotFoundError(VlgenError):
    """The coco-caption metrics need a Java runtime and none is on PATH."""


def _pycocoevalcap_dir() -> Path:
    import pycocoevalcap.bleu.bleu  # a namespace package: locate it through a real module

    return Path(pycocoevalcap.bleu.bleu.__file__).resolve().parent.parent


def find_java() -> str:
    """Path of the `java` executable, or JavaNotFoundError saying what to install."""
    java = shutil.which("java")
    if java is None:
        raise JavaNotFoundError(
            "BLEU/METEOR/ROUGE-L/CIDEr are computed by pycocoevalcap, whose PTB tokenizer and METEOR are Java "
            "programs, and no `java` is on PATH. Install a Java runtime (Java 8+; e.g. `apt-get install "
            "default-jre-headless` or `conda install openjdk`), or leave out the coco metrics "
            "(e.g. `--metrics sacrebleu,rouge,bertscore,prompt_similarity`)."
        )
    return java


def spice_unavailable_reason() -> str | None:
    """None when SPICE can run; otherwise why not (checked without touching the network)."""
    spice = _pycocoevalcap_dir() / "spice"
    missing = [
        n
        for n in ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
        if not (spice / "lib" / n).is_file()
    ]
    if missing:
        return (
            f"SPICE needs Stanford CoreNLP 3.6.0 jars in {spice / 'lib'} (missing: {', '.join(missing)}); "
            "run `python -m pycocoevalcap.spice.get_stanford_models` once where there is internet"
        )
    if shutil.which("java") is None:
        return "SPICE needs a Java runtime and no `java` is on PATH"
    return None


def ptb_tokenize(sentences: list[str]) -> list[str]:
    """pycocoevalcap's PTBTokenizer for a flat list of sentences, in one JVM run (same output line for line)."""
    java = find_java()
    jar = _pycocoevalcap_dir() / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    cmd = [java, "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"]
    # -encoding: read and write UTF-8 whatever the locale (Java 17's default charset follows LANG).
    cmd += ["-encoding", "utf-8"]
    text = "".join(_LINE_BREAKS.sub(" ", s) + "\n" for s in sentences)
    proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, check=False)
    if proc.returncode != 0:
        raise VlgenError(f"the PTB tokenizer (Java) failed: {proc.stderr.decode(errors='replace').strip()[-500:]}")
    lines = proc.stdout.decode("utf-8").split("\n")
    if len(lines) < len(sentences):
        raise VlgenError(f"the PTB tokenizer returned {len(lines)} lines for {len(sentences)} sentences")
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS) for line in lines[: len(sentences)]]


class _MeteorProcess:
    """One METEOR 1.5 JVM (same command line as pycocoevalcap's Meteor), reused across calls."""

    def __init__(self, java: str) -> None:
        meteor_dir = _pycocoevalcap_dir() / "meteor"
        cmd = [java, "-jar", "-Xmx2G", "meteor-1.5.jar", "-", "-", "-stdio", "-l", "en", "-norm"]
        self.proc = subprocess.Popen(
            cmd, cwd=meteor_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self.lock = threading.Lock()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def score(self, hyps: list[str], refs: list[list[str]]) -> tuple[float, list[float]]:
        """METEOR exactly as pycocoevalcap's Meteor.compute_score, with the SCORE requests pipelined."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        lines = []
        for hyp, ref in zip(hyps, refs, strict=True):
            hyp = hyp.replace("|||", "").replace("  ", " ")
            lines.append(" ||| ".join(("SCORE", " ||| ".join(ref), hyp)) + "\n")

        def feed() -> None:
            # A writer thread: writing everything before reading could fill both pipes and deadlock.
            stdin.write("".join(lines).encode("utf-8"))
            stdin.flush()

        with self.lock:
            writer = threading.Thread(target=feed, daemon=True)
            writer.start()
            stats = [stdout.readline().decode("utf-8").strip() for _ in lines]
            writer.join()
            stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode("utf-8"))
            stdin.flush()
            per_item = [float(stdout.readline().strip()) for _ in lines]
            corpus = float(stdout.readline().strip())
        return corpus, per_item

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.kill()
            self.proc.wait(timeout=5)


_meteor: _MeteorProcess | None = None
_meteor_guard = threading.Lock()


def _get_meteor() -> _MeteorProcess:
    global _meteor
    with _meteor_guard:
        if _meteor is None or not _meteor.alive():
            _meteor = _MeteorProcess(find_java())
        return _meteor


def _reset_meteor() -> None:
    global _meteor
    with _meteor_guard:
        if _meteor is not None:
            _meteor.close()
        _meteor = None


def warm_up() -> None:
    """Start the METEOR JVM now (it loads for seconds; benchmarks/README.md) so it overlaps with tokenization."""
    _get_meteor()


@atexit.register
def _close_meteor() -> None:
    if _meteor is not None:
        _meteor.close()


@dataclass
class CocoResult:
    corpus: dict[str, float | None]
    per_item: dict[str, list[float]]
    notes: dict[str, str] = field(default_factory=dict)


def coco_caption_scores(
    predictions: list[str], references: list[list[str]], *, spice: bool = True, meteor: bool = True
) -> CocoResult:
    """BLEU-1..4, METEOR, ROUGE-L, CIDEr(-D) and, when its jars exist, SPICE - COCOEvalCap's numbers.

    Inputs are raw (untokenized) strings; `references[i]` holds the references of `predictions[i]`.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    n = len(predictions)
    if meteor:
        warm_up()
    flat = list(predictions) + [r for refs in references for r in refs]
    tokens = ptb_tokenize(flat)
    res = {i: [tokens[i]] for i in range(n)}
    gts: dict[int, list[str]] = {}
    pos = n
    for i, refs in enumerate(references):
        gts[i] = tokens[pos : pos + len(refs)]
        pos += len(refs)

    out: dict[str, float | None] = {}
    per_item: dict[str, list[float]] = {}
    box: dict[str, tuple[float, list[float]] | BaseException] = {}
    if meteor:

        def run_meteor() -> None:
            try:
                box["METEOR"] = _get_meteor().score([res[i][0] for i in range(n)], [gts[i] for i in range(n)])
            except BaseException as e:  # re-raised in the caller's thread
                box["METEOR"] = e
                _reset_meteor()  # its pipes may hold half a reply: never reuse it

        thread = threading.Thread(target=run_meteor, daemon=True)
        thread.start()

    bleu, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
    for k in range(4):
        out[f"BLEU-{k + 1}"] = float(bleu[k])
        per_item[f"BLEU-{k + 1}"] = [float(x) for x in bleu_items[k]]
    rouge, rouge_items = Rouge().compute_score(gts, res)
    out["ROUGE-L"], per_item["ROUGE-L"] = float(rouge), [float(x) for x in rouge_items]
    cider, cider_items = Cider().compute_score(gts, res)
    out["CIDEr"], per_item["CIDEr"] = float(cider), [float(x) for x in cider_items]

    if meteor:
        thread.join()
        got = box["METEOR"]
        if isinstance(got, BaseException):
            raise VlgenError(f"METEOR (Java) failed: {got}") from got
        out["METEOR"], per_item["METEOR"] = got
    else:
        out["METEOR"] = None

    notes: dict[str, str] = {}
    reason = spice_unavailable_reason() if spice else "not requested"
    if reason is None:
        try:
            from pycocoevalcap.spice.spice import Spice

            with contextlib.redirect_stdout(sys.stderr):
                score, items = Spice().compute_score(gts, res)
            out["SPICE"], per_item["SPICE"] = float(score), [float(x["All"]["f"]) for x in items]
        except Exception as e:  # SPICE 1.0 is fragile (Java > 8, lmdb cache); report, don't fail the run
            out["SPICE"], notes["SPICE"] = None, f"SPICE failed: {type(e).__name__}: {e}"
    else:
        out["SPICE"], notes["SPICE"] = None, reason
    return CocoResult(corpus=out, per_item=per_item, notes=notes)


def pycocoevalcap_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pycocoevalcap")
    except PackageNotFoundError:  # pragma: no cover - a source checkout
        return os.fspath(_pycocoevalcap_dir())
