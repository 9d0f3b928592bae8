"""`python -m vlgen ...` (also what `accelerate launch -m vlgen ...` runs)."""

import sys

from vlgen.cli import main

if __name__ == "__main__":
    sys.exit(main())
