"""The deterministic BPE trainer, the shipped vocabularies the tiny tokenizers load, and their regeneration."""

import math
from collections import Counter

from vlgen.testing.vocab import (
    CLIP_BOS,
    CLIP_EOS,
    CLIP_EOW,
    GPT2_EOS,
    T5_EOS,
    T5_EXTRA_IDS,
    T5_PAD,
    T5_UNK,
    VOCAB_DIR,
    _learn_merges,
    bert_uncased_vocab,
    byte_level_bpe,
    bytes_to_unicode,
    caption_corpus,
    clip_bpe,
    stale_vocab_files,
    t5_unigram,
    train_byte_level_bpe,
    train_clip_bpe,
    write_vocab_files,
)


def test_ties_are_broken_by_sorting_not_by_insertion_order():
    # "c d" is inserted first but every pair occurs once: the smallest pair must win, then the next.
    words = Counter({("c", "d"): 1, ("a", "b"): 1})
    assert _learn_merges(words, n_merges=5, min_frequency=1) == [("a", "b"), ("c", "d")]
    # The most frequent pair wins over a lexicographically smaller one, and min_frequency stops training.
    words = Counter({("x", "y"): 3, ("a", "b"): 1})
    assert _learn_merges(words, n_merges=5, min_frequency=2) == [("x", "y")]


def test_bpe_training_is_reproducible_and_consistent():
    corpus = caption_corpus()
    for train in (train_byte_level_bpe, train_clip_bpe):
        vocab, merges = train(corpus)
        assert (vocab, merges) == train(list(corpus))  # same input, same vocab/merges
        assert sorted(vocab.values()) == list(range(len(vocab)))  # ids are contiguous
        for a, b in merges:  # every merge's parts and result exist (the tokenizer rejects merges otherwise)
            assert a in vocab and b in vocab and a + b in vocab
        assert len(merges) > 100


def test_byte_level_vocab_layout_matches_gpt2():
    b2u = bytes_to_unicode()
    assert len(set(b2u.values())) == 256 and b2u[ord(" ")] == "Ġ" and b2u[ord("a")] == "a"
    vocab, _ = train_byte_level_bpe(caption_corpus())
    assert vocab["!"] == 0  # GPT-2's vocab.json starts with the printable bytes
    assert vocab[GPT2_EOS] == len(vocab) - 1  # and ends with <|endoftext|> (50256 in the real one)
    assert "Ġred" in vocab and "Ġcircle" in vocab  # frequent caption words became single tokens
    assert 300 < len(vocab) <= 1000


def test_clip_vocab_layout_matches_clip():
    vocab, _ = train_clip_bpe(caption_corpus())
    assert vocab["a" + CLIP_EOW] == 256 + vocab["a"]  # bytes, then bytes+</w>
    assert (vocab[CLIP_BOS], vocab[CLIP_EOS]) == (len(vocab) - 2, len(vocab) - 1)
    assert "red" + CLIP_EOW in vocab and "circle" + CLIP_EOW in vocab


def test_t5_unigram_layout_matches_t5():
    pieces = t5_unigram()
    tokens = [t for t, _ in pieces]
    assert tokens[:4] == [T5_PAD, T5_EOS, T5_UNK, "\u2581"]  # ids 0-3 as in t5-v1_1's spiece.model
    assert tokens[-T5_EXTRA_IDS:] == [f"<extra_id_{i}>" for i in reversed(range(T5_EXTRA_IDS))]
    assert len(set(tokens)) == len(tokens) == 336
    assert tokens[4] == "\u2581a" and "\u2581circle" in tokens and "A" in tokens  # most frequent word first
    words = [score for t, score in pieces if t.startswith("\u2581") and len(t) > 1]
    assert words == sorted(words, reverse=True) and all(s < 0 for s in words)  # log-probabilities, falling
    assert t5_unigram() == pieces and t5_unigram(list(caption_corpus())) == pieces  # counted, not trained
    assert t5_unigram(["b b a"])[4:6] == [("\u2581b", math.log(2 / 3)), ("\u2581a", math.log(1 / 3))]


def test_bert_vocab_is_the_real_bert_base_uncased():
    vocab = bert_uncased_vocab()
    assert len(vocab) == 30522
    assert [vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 100, 101, 102, 103]
    assert (vocab["a"], vocab["red"], vocab["circle"]) == (1037, 2417, 4418)


def test_shipped_vocabularies_are_what_training_gives():
    """The tokenizers load the shipped files: they hold exactly what the trainer makes from the corpus."""
    assert byte_level_bpe() == train_byte_level_bpe(caption_corpus())
    assert clip_bpe() == train_clip_bpe(caption_corpus())
    vocab, merges = byte_level_bpe()
    vocab.clear(), merges.clear()  # callers get their own copies
    assert byte_level_bpe()[0]


def test_regenerating_gives_the_committed_files(tmp_path):
    written = write_vocab_files(tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "clip/merges.txt", "clip/vocab.json", "gpt2/merges.txt", "gpt2/vocab.json",
    ]  # fmt: skip
    for path in written:
        shipped = VOCAB_DIR / path.relative_to(tmp_path)
        assert path.read_bytes() == shipped.read_bytes(), f"{shipped} is stale: run `python -m vlgen.testing vocab`"
    assert stale_vocab_files(tmp_path) == [] and stale_vocab_files() == []
    (tmp_path / "clip" / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    assert stale_vocab_files(tmp_path) == [tmp_path / "clip" / "merges.txt"]


def test_vocab_command_checks_and_regenerates(tmp_path, monkeypatch, capsys):
    import vlgen.testing.vocab as vocab_module
    from vlgen.testing.__main__ import main

    assert main(["vocab", "--check"]) == 0
    monkeypatch.setattr(vocab_module, "VOCAB_DIR", tmp_path)
    assert main(["vocab", "--check"]) == 1  # nothing there yet
    assert "differs from a fresh training run" in capsys.readouterr().err
    assert main(["vocab"]) == 0 and main(["vocab", "--check"]) == 0
    assert main(["nope"]) == 2


def test_missing_vocabulary_is_one_line_naming_the_folder(tmp_path):
    import pytest

    from vlgen.errors import ModelNotAvailableError
    from vlgen.testing.vocab import _read

    with pytest.raises(ModelNotAvailableError, match=f"{tmp_path / 'gpt2'}.*python -m vlgen.testing vocab"):
        _read("gpt2", tmp_path)
