"""The deterministic BPE trainer and the vocabularies the tiny tokenizers are built from."""

from collections import Counter

from vlgen.testing.vocab import (
    CLIP_BOS,
    CLIP_EOS,
    CLIP_EOW,
    GPT2_EOS,
    _learn_merges,
    bert_uncased_vocab,
    bytes_to_unicode,
    caption_corpus,
    train_byte_level_bpe,
    train_clip_bpe,
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


def test_bert_vocab_is_the_real_bert_base_uncased():
    vocab = bert_uncased_vocab()
    assert len(vocab) == 30522
    assert [vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 100, 101, 102, 103]
    assert (vocab["a"], vocab["red"], vocab["circle"]) == (1037, 2417, 4418)
