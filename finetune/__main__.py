"""``python -m finetune``: the same as ``cssl finetune`` (see :mod:`finetune.cli`)."""

import sys

from finetune.cli import main

if __name__ == "__main__":
    sys.exit(main())
