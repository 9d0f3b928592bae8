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
