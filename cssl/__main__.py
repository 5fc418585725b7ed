"""``python -m cssl`` is the ``cssl`` command."""

import sys

from cssl.cli import main

sys.exit(main())
