from vlgen.report import html


def test_text_is_escaped_and_raw_is_not():
    t = html.table(["a<b"], [["<script>x</script>", html.Raw("<b>ok</b>")]], numeric=[0])
    assert "&lt;script&gt;" in t and "<script>" not in t and "<b>ok</b>" in t and 'class="num"' in t


def test_page_is_self_contained(tmp_path):
    path = html.write_page(tmp_path / "r.html", "T & co", html.section("S", html.cards([("BLEU", "0.1")])))
    text = path.read_text()
    assert text.startswith("<!doctype html>") and "<style>" in text and "T &amp; co" in text
    assert "http://" not in text and "https://" not in text  # no external requests


def test_fmt_and_data_uri():
    assert html.fmt(None) == "\u2014" and html.fmt(0.123456) == "0.1235" and html.fmt(3) == "3"
    assert html.data_uri(b"\x89PNG", "image/png").startswith("data:image/png;base64,")


def test_small_numbers_are_scientific_not_zeros():
    """Issue 14: a random-VGG Gram distance showed as "0.000000", a CIDEr+BLEU-4 as 2.6500783447471926e-17."""
    assert html.fmt(2.6500783447471926e-17) == "2.65e-17"
    assert html.fmt(3.2e-8, 6) == "3.20e-08" and html.fmt(-4.5e-9, 6) == "-4.50e-09"
    assert html.fmt(0.00123) == "0.0012" and html.fmt(0.000999) == "9.99e-04"  # 2+ significant digits stay fixed
    assert html.fmt(0.0) == "0.0000" and html.fmt(12.5, 2) == "12.50" and html.fmt(float("nan")) == "nan"
