"""python -m bench.recover [PATHS]: turn the journals of killed runs into saved runs marked incomplete."""

import sys

from .journal import main

if __name__ == "__main__":
    sys.exit(main())
