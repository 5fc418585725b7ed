"""The phonetic probe on real speech: PNMI per level of pretrained models on held-out LibriSpeech speakers.

    python benchmarks/real_probe.py [--data ../shared/data] [--out runs/real-probe] [--utterances 283]
                                    [NAME=CKPT ...]

The probe set is the test speakers of the LibriSpeech-mini split (``benchmarks/real_corpora.py``: four
speakers no pretraining run hears), phone-aligned by synthesis (``cssl data align``: eSpeak NG speaks each
transcript at the recording's pace, DTW of MFCC frames maps its phone onsets). Every model is probed on
the same frames with the same k-means (100 units per level): the shipped synthetic-speech checkpoint,
random towers of the same architecture (the ratio the issue's goal is about), and every ``NAME=CKPT``
given. Prints a table of PNMI per level and writes ``probe.md``, ``probe.json`` and ``probe.png`` into
``--out``. Runs only where the development recordings are; otherwise says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import real_corpora  # noqa: E402

from cssl.data.alignment import alignment_path  # noqa: E402
from cssl.data.manifest import write_manifest  # noqa: E402
from cssl.experiments.steps import PRETRAINED  # noqa: E402

RANDOM = "random towers"


def probe_set(corpus: real_corpora.Corpus, out: Path, utterances: int | None) -> Path:
    """The LibriSpeech test speakers' manifest with its alignments (aligned once, then reused)."""
    manifest = out / "ls-test.jsonl"
    if not alignment_path(manifest).is_file():
        from cssl.synth.align import align_manifest

        out.mkdir(parents=True, exist_ok=True)
        write_manifest(corpus.labeled["test"], manifest)
        report = align_manifest(manifest, max_utterances=utterances)
        print(f"aligned {report.aligned} utterances in {report.seconds:.0f} s; {len(report.skipped)} skipped", flush=True)
    return manifest


def towers(checkpoint: Path | None):
    """The pretrainer (towers, quantizer) of a checkpoint, or random towers of the shipped checkpoint's
    architecture (``None``)."""
    import torch

    from cssl.convert.loading import load_pretrainer
    from cssl.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint or PRETRAINED)
    pretrainer, cfg = load_pretrainer(ckpt, str(checkpoint or PRETRAINED))
    if checkpoint is None:  # the same architecture, freshly initialised
        from cssl.model.wav2vec2 import build_pretrainer

        torch.manual_seed(0)
        pretrainer = build_pretrainer(cfg)
    return pretrainer


def probe(name: str, checkpoint: Path | None, data):
    """Probe result (:class:`cssl.probe.Probe` ``data``) of a checkpoint or random towers (``None``)."""
    pretrainer = towers(checkpoint)
    result = data.run(pretrainer.model, pretrainer.quantizer)
    print(f"{name}: {result.summary()}", flush=True)
    return result


def probe_parser(doc: str, out: Path) -> argparse.ArgumentParser:
    """The arguments every probe of pretrained models takes: NAME=CKPT ..., --data, --out, --threads."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", metavar="NAME=CKPT", help="pretrained checkpoints or releases to probe")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--threads", type=int, default=None)
    return parser


def models_to_probe(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Path | None] | None:
    """Random towers (``None``), the shipped checkpoint and every ``NAME=CKPT`` of ``args.models``; None (said)
    where the development recordings are not; applies ``args.threads``."""
    if "ls" not in real_corpora.available(args.data):
        print(f"{args.data}: no LibriSpeech-mini here; nothing to do")
        return None
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    models: dict[str, Path | None] = {RANDOM: None, "synthetic (shipped)": PRETRAINED}
    for spec in args.models:
        name, _, path = spec.partition("=")
        if not path:
            parser.error(f"{spec}: give NAME=CKPT")
        models[name] = Path(path)
    return models


def main(argv: list[str] | None = None) -> int:
    parser = probe_parser(__doc__, ROOT / "runs" / "real-probe")
    parser.add_argument("--utterances", type=int, default=None, help="probe the first N test utterances (default: all)")
    args = parser.parse_args(argv)
    models = models_to_probe(parser, args)
    if models is None:
        return 0
    corpus = real_corpora.librispeech(args.data / real_corpora.FOLDERS["ls"])
    for path in models.values():
        if path is not None:
            real_corpora.refuse_checkpoint(path, corpus.test_speakers, "LibriSpeech-mini")
    from cssl.probe import Probe

    data = Probe.from_manifest(probe_set(corpus, args.out, args.utterances), max_utterances=args.utterances)
    results = {name: probe(name, path, data) for name, path in models.items()}
    levels = [s.level for s in next(iter(results.values())).levels]
    base = results[RANDOM].best().scores.pnmi
    lines = [f"| model | {' | '.join(levels)} | best | best / random |", "|---|" + "---:|" * (len(levels) + 2)]
    for name, r in results.items():
        pnmi = {s.level: s.scores.pnmi for s in r.levels}
        lines.append(f"| {name} | " + " | ".join(f"{pnmi[level]:.3f}" for level in levels)
                     + f" | {r.best().scores.pnmi:.3f} ({r.best().level}) | {r.best().scores.pnmi / base:.2f}x |")
    first = next(iter(results.values()))
    text = (f"PNMI per level on {first.utterances} utterances of the LibriSpeech-mini test speakers "
            f"({first.frames} frames, {first.phones} phones; 100 k-means units per level)\n\n" + "\n".join(lines))
    print(text)
    (args.out / "probe.md").write_text(text + "\n", encoding="utf-8")
    (args.out / "probe.json").write_text(json.dumps(
        {name: {s.level: s.scores.pnmi for s in r.levels} for name, r in results.items()}, indent=1) + "\n")
    plot(results, levels, args.out / "probe.png")
    print(f"plot: {args.out / 'probe.png'}")
    return 0


def plot(results: dict, levels: list[str], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, r in results.items():
        pnmi = {s.level: s.scores.pnmi for s in r.levels}
        ax.plot(levels, [pnmi[level] for level in levels], "o-", label=name)
    ax.set(ylabel="PNMI", title="Phonetic probe, LibriSpeech-mini test speakers (real speech)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
