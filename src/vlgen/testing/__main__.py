"""`python -m vlgen.testing vocab [--check]`: regenerate (or check) the tiny tokenizers' shipped vocabularies.

Not `python -m vlgen.testing.vocab`: `vlgen.testing` imports that module itself, and runpy would run it twice.
"""

from __future__ import annotations

import sys

from vlgen.testing import vocab


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["vocab"]:
        return vocab.main(argv[1:])
    print("usage: python -m vlgen.testing vocab [--check]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
