"""``python -m pretrain``: the same as ``cssl pretrain`` (see :mod:`pretrain.cli`)."""

import sys

from pretrain.cli import main

sys.exit(main())
