"""``python -m cssl``: the same as the ``cssl`` command."""

import sys

from cssl.cli import main

sys.exit(main())
