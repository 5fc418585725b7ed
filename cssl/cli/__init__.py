"""The ``cssl`` command: every stage and tool of the suite.

Each command group lives in its own module and registers its subcommands on the
parser; ``main`` dispatches to the function a subcommand set as ``func``. The training
stages and the demo (:mod:`cssl.cli.stages`) keep their own command lines and get the
rest of ``argv`` as it is. Modules that pull in PyTorch are imported by the command that
needs them, so ``cssl --help`` is quick.
"""

from __future__ import annotations

import argparse
import sys

from cssl import __version__
from cssl.cli import asr, convert, data, deploy, lm, probe, select
from cssl.cli.stages import STAGES, run_stage_command, stage_of
from cssl.utils.errors import run_reporting

DESCRIPTION = """Self-supervised speech representations and CTC speech recognition.

training (each stage: --help for its options; several processes: accelerate launch -m cssl STAGE ...):
  cssl pretrain CONFIG [key=value ...]         stage 1: contrastive pretraining on unlabeled audio
  cssl finetune CONFIG [key=value ...]         stage 2: CTC fine-tuning, early stopping (--cv K)
  cssl calibrate CKPT DEV                      fit a fine-tuned model's output temperature on dev
  cssl release CKPT OUT                        a slim pretrained model from a training checkpoint
data:
  cssl data manifest|split|vocab|stats         audio manifests, speaker splits, vocabularies
  cssl data synth|align|shard|dedup            the demo corpus, alignments, tar shards, duplicates
recognition and scoring:
  cssl lm build|tune                           n-gram language models for beam search, their weights
  cssl evaluate CKPT MANIFEST                  WER, CER, RTF, calibration of a fine-tuned model
  cssl transcribe CKPT FILES_OR_DIRS           text with word times and confidences
  cssl pseudo-label CKPT MANIFEST --out M      self-training labels: the most confident transcripts
  cssl select MANIFEST OUT --minutes N         which utterances to label first (coverage of the pile)
models:
  cssl probe CKPT MANIFEST                     how phonetic each level of a model is (PNMI, purities)
  cssl convert SRC DST --to hf|fairseq2|...    checkpoints for transformers, fairseq2, torchaudio
  cssl export CKPT OUT.onnx [--int8]           an ONNX file for ONNX Runtime (transcribe takes it too)
  cssl serve CKPT_OR_ONNX [--port 8000]        a local HTTP/WebSocket service and a page to try it
  cssl demo [--out DIR]                        the demo on the embedded corpus (make demo)

Stage configs: --print-config lists every key. User errors print one line; --debug or
CSSL_DEBUG=1 shows the traceback."""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (one sub-parser per command group)."""
    parser = argparse.ArgumentParser(prog="cssl", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cssl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of user errors")
    groups = parser.add_subparsers(dest="group", required=True, metavar="COMMAND", help=argparse.SUPPRESS)
    data.register(groups)
    lm.register(groups)
    asr.register(groups)
    probe.register(groups)
    convert.register(groups)
    deploy.register(groups)
    select.register(groups)
    for name, stage in STAGES.items():  # listed in --help; main() hands their arguments over untouched
        groups.add_parser(name, help=stage.summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cssl`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    stage = stage_of(argv)
    if stage is not None:
        return run_stage_command(*stage)
    args = build_parser().parse_args(argv)
    return run_reporting("cssl", lambda: int(args.func(args) or 0), args.debug)
