from vlgen.metrics import compare_scores


def test_compare_change_and_relative_change():
    rows = compare_scores(
        {"BLEU": 0.27, "BERTScore": 0.5, "SPICE": None}, {"BLEU": 0.78, "BERTScore": 0.5, "SPICE": None}
    )
    by = {r["metric"]: r for r in rows}
    assert abs(by["BLEU"]["change"] - 0.51) < 1e-12
    assert abs(by["BLEU"]["relative_change"] - 0.51 / 0.27) < 1e-12  # the write-up's +189%
    assert by["BERTScore"]["relative_change"] == 0.0
    assert by["SPICE"]["change"] is None and by["SPICE"]["relative_change"] is None


def test_zero_baseline_has_no_relative_change():
    (row,) = compare_scores({"BLEU-4": 0.0}, {"BLEU-4": 0.1})
    assert row["change"] == 0.1 and row["relative_change"] is None


def test_near_zero_baseline_has_no_relative_change():
    from vlgen.metrics import compare_scores

    rows = compare_scores({"BLEU-4": 1e-12, "CIDEr": 0.5}, {"BLEU-4": 0.2, "CIDEr": 0.75})
    by = {r["metric"]: r for r in rows}
    assert by["BLEU-4"]["relative_change"] is None and by["BLEU-4"]["change"] > 0.19
    assert by["CIDEr"]["relative_change"] == 0.5
