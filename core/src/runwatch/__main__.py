"""`python -m runwatch`: the `runwatch` command."""

import sys

from runwatch.cli import main

if __name__ == "__main__":
    sys.exit(main())
