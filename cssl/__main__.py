"""``python -m cssl``: the same as the ``cssl`` command."""

import sys

from cssl.cli import main

if __name__ == "__main__":
    sys.exit(main())
