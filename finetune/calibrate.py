"""``cssl calibrate CKPT DEV``: a fitted temperature for a fine-tuned model, stored in its checkpoint.

    cssl calibrate runs/finetune-tiny/best.pt corpus/dev.tsv [--eval corpus/test.tsv]

The temperature minimises, on dev, either the negative log-likelihood of word
correctness under the word confidences (``--objective word``, the default: it calibrates
the confidences that decoding reports) or the CTC negative log-likelihood of the
transcripts (``--objective ctc``: frame-level probabilities). The checkpoint is rewritten
atomically with ``temperature`` set; inference divides logits by it. With ``--eval``,
word confidences on that set (default: the dev set) are compared with word correctness
before and after: ECE, NLL and a reliability diagram (PNG beside the checkpoint).
The work is done by :func:`cssl.score.temperature.calibrate`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cssl.score.temperature import OBJECTIVES, calibrate, calibration_warnings
from cssl.utils.errors import run_reporting


def main(argv: list[str] | None = None, prog: str = "python -m finetune.calibrate") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("dev", help="labeled manifest the temperature is fitted on")
    parser.add_argument("--eval", default=None, help="labeled manifest for the before/after report (default: dev)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="word",
                        help="word: NLL of word correctness under word confidences; ctc: CTC NLL")
    parser.add_argument("--debug", action="store_true", help="show the traceback of user errors")
    args = parser.parse_args(argv)
    return run_reporting(parser.prog, lambda: _run(args), args.debug)


def _run(args: argparse.Namespace) -> int:
    figures = calibrate(args.checkpoint, args.dev, args.eval, objective=args.objective)
    print(f"temperature {figures['temperature']:.3f} stored in {figures['stored_in']}")
    print(f"CTC NLL per utterance {figures['nll_before']:.3f} -> {figures['nll_after']:.3f}; "
          f"word NLL {figures['word_nll_before']:.3f} -> {figures['word_nll_after']:.3f}; "
          f"ECE {figures['ece_before']:.4f} -> {figures['ece_after']:.4f} over {int(figures['words'])} words")
    for warning in calibration_warnings(figures):
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
