"""``python -m finetune``: the same as ``cssl finetune`` (see :mod:`finetune.cli`)."""

import sys

from finetune.cli import main

sys.exit(main())
