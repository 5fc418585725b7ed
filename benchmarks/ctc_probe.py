"""The linear CTC probe on real speech: how many characters a frozen model's levels give away.

    python benchmarks/ctc_probe.py [--data ../shared/data] [--out runs/ctc-probe] [--minutes 10]
                                   [--epochs 40] [NAME=CKPT ...]

For every level of each model (the local tower's normed features, each Transformer layer), a linear
layer to characters is trained with CTC on frozen features of the LibriSpeech-mini label subset of
``--minutes`` (the nested subsets of ``benchmarks/librispeech.py``: train speakers only), then decodes
the dev subset greedily; the dev CER per level is printed beside random towers of the same
architecture. PNMI (``real_probe.py``) says whether frame clusters follow phones; this says whether a
CTC head can read characters off the features, which is what fine-tuning starts from: a level no
better than random towers here gives fine-tuning nothing to build on. Features are computed once per
model (about 25 s for 10 minutes of audio on one core); each level's head takes about 45 s. Runs
only where the development recordings are; otherwise says so and exits 0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import librispeech  # noqa: E402
import real_corpora  # noqa: E402
import real_probe  # noqa: E402


def waves(manifest) -> list:
    """The manifest's audio, decoded once for every model probed: ``(S,)`` each."""
    from cssl.data.audio import load_audio

    return [load_audio(manifest.audio_path(entry)) for entry in manifest]


def features(model, waves: list) -> list[list]:
    """Per utterance, the frozen features of every level: ``[(T, C) local, (T, D) layer 1, ...]``."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for wave in waves:
            enc = model.encode(wave.unsqueeze(0))  # (1, S) -> (1, T, .)
            out.append([enc.normed[0]] + [layer[0] for layer in enc.layers])
    return out


def fit_head(xs: list, targets: list, symbols: int, epochs: int, seed: int = 0, batch: int = 8, lr: float = 2e-3):
    """A linear CTC head (blank = 0) trained on frozen features ``xs`` (each ``(T, D)``) with Adam."""
    import torch
    from torch.nn.utils.rnn import pad_sequence

    torch.manual_seed(seed)
    head = torch.nn.Linear(xs[0].shape[1], symbols)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(xs)).tolist()
        for start in range(0, len(xs), batch):
            pick = order[start:start + batch]
            x = pad_sequence([xs[i] for i in pick], batch_first=True)  # (B, T, D)
            log_probs = head(x).log_softmax(-1).transpose(0, 1)  # (B, T, V) -> (T, B, V)
            loss = torch.nn.functional.ctc_loss(
                log_probs, torch.cat([targets[i] for i in pick]), torch.tensor([len(xs[i]) for i in pick]),
                torch.tensor([len(targets[i]) for i in pick]), zero_infinity=True)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return head


def greedy(head, x, symbols: list[str]) -> str:
    """Best path of ``head`` over ``x`` ``(T, D)``, repeats merged, blanks dropped."""
    import torch

    with torch.no_grad():
        ids = torch.unique_consecutive(head(x).argmax(-1)).tolist()
    return "".join(symbols[i] for i in ids if i != 0)


def standardiser(xs: list):
    """Per-dimension mean and standard deviation over every frame of ``xs`` (each ``(T, D)``): ``(D,)``, ``(D,)``."""
    import torch

    frames = torch.cat(xs)  # (sum T, D)
    return frames.mean(0), frames.std(0).clamp_min(1e-12)  # no additive epsilon: it would bend small scales


def probe(pretrainer, train, dev, audio: tuple[list, list], epochs: int, standardise: bool = False) -> list[float]:
    """Dev CER of the linear CTC head of every level (``audio``: the train and dev waves); with ``standardise``
    each level's features are first standardised per dimension by the training frames' statistics."""
    import torch

    from cssl.score.metrics import error_rates

    symbols = ["<blank>"] + sorted({c for e in train for c in e.text or ""})
    index = {c: i for i, c in enumerate(symbols)}
    targets = [torch.tensor([index[c] for c in e.text or ""]) for e in train]
    refs = [e.text or "" for e in dev]
    train_x, dev_x = features(pretrainer.model, audio[0]), features(pretrainer.model, audio[1])
    cers = []
    for level in range(len(train_x[0])):
        xs, dev_xs = [f[level] for f in train_x], [f[level] for f in dev_x]
        if standardise:
            mean, std = standardiser(xs)
            xs, dev_xs = [(x - mean) / std for x in xs], [(x - mean) / std for x in dev_xs]
        head = fit_head(xs, targets, len(symbols), epochs)
        hyps = [greedy(head, x, symbols) for x in dev_xs]
        cers.append(error_rates(refs, hyps).cer)
    return cers


def main(argv: list[str] | None = None) -> int:
    parser = real_probe.probe_parser(__doc__, ROOT / "runs" / "ctc-probe")
    parser.add_argument("--minutes", type=float, default=10.0, help="the label subset the heads learn from")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--standardise", action="store_true",
                        help="standardise each level's features per dimension (training frames' mean and std) "
                             "before its head: tells a level's content from its scale")
    args = parser.parse_args(argv)
    models = real_probe.models_to_probe(parser, args)
    if models is None:
        return 0
    paths = librispeech.prepare(args.data, args.out, [args.minutes], seed=0)
    tests = set(json.loads(paths["test_speakers"].read_text()))
    for path in models.values():
        if path is not None:
            real_corpora.refuse_checkpoint(path, tests, "LibriSpeech-mini")
    from cssl.data.manifest import read_manifest

    train, dev = read_manifest(paths[f"labels-{args.minutes:g}"]), read_manifest(paths["dev-small"])
    audio = waves(train), waves(dev)
    results = {}
    for name, path in models.items():
        results[name] = probe(real_probe.towers(path), train, dev, audio, args.epochs, args.standardise)
        print(f"{name}: " + " ".join(f"{c:.3f}" for c in results[name]), flush=True)
    levels = ["local"] + [f"layer {i}" for i in range(1, len(results[real_probe.RANDOM]))]
    lines = [f"| model | {' | '.join(levels)} | best |", "|---|" + "---:|" * (len(levels) + 1)]
    for name, cers in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cers) + f" | {min(cers):.3f} |")
    text = (f"Dev CER of a linear CTC head per level, trained on {len(train)} utterances ({train.hours * 60:.0f} min) "
            f"of the LibriSpeech-mini train speakers, {args.epochs} epochs"
            f"{', features standardised per dimension' if args.standardise else ''}; {len(dev)} dev utterances\n\n"
            + "\n".join(lines))
    print(text)
    (args.out / "ctc_probe.md").write_text(text + "\n", encoding="utf-8")
    (args.out / "ctc_probe.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
