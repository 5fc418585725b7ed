"""``cssl select MANIFEST OUT --minutes N``: which utterances to transcribe first."""

from __future__ import annotations

import argparse
from pathlib import Path

from cssl import PRETRAINED, REAL_PRETRAINED
from cssl.cli.options import force_arg, set_threads, threads_arg


def default_checkpoint() -> Path:
    """The shipped real-speech checkpoint, or the synthetic one where it is absent."""
    return REAL_PRETRAINED if REAL_PRETRAINED.is_file() else PRETRAINED


def register(groups: argparse._SubParsersAction) -> None:
    """Adds the ``select`` command."""
    p = groups.add_parser(
        "select", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="choose N minutes of utterances to label that cover the unlabeled pile",
        description="Embeds every utterance with a pretrained model (mean of one level's frames), clusters the "
                    "pile with faiss k-means into about as many clusters as the budget holds utterances, and picks "
                    "round the clusters, largest first, the member nearest each centre that still fits; with "
                    "speakers known, no speaker gets much more than an even share. --method units instead gives "
                    "every frame a k-means unit and picks greedily, per second, the utterances that add most to "
                    "a concave coverage of the units (sum over units of share x sqrt(frames picked)). --method "
                    "random is the baseline. Writes OUT, OUT.report.md (coverage against a random pick of the same budget) and "
                    "OUT.png (the pile and the picks in two dimensions).")
    p.add_argument("manifest", type=Path, help="the unlabeled pile")
    p.add_argument("out", type=Path, help="manifest of the utterances to label")
    p.add_argument("--minutes", type=float, required=True, help="labelling budget in minutes of audio")
    p.add_argument("--ckpt", type=Path, default=None,
                   help="pretrained model to embed with (default: the shipped real-speech checkpoint)")
    p.add_argument("--level", default="local", help="'local' (the local tower) or 'layer K'")
    p.add_argument("--method", choices=["cover", "units", "random"], default="cover")
    p.add_argument("--units", type=int, default=100, help="k-means units of --method units")
    p.add_argument("--balance", type=float, default=None,
                   help="--method units: picked frames share out over the units as share ** balance "
                        "(1: the pile's proportions, 0: every unit alike; default cssl.curation.units.BALANCE, 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seeds k-means or the random order")
    threads_arg(p)
    force_arg(p)
    p.set_defaults(func=run_select)


def run_select(args: argparse.Namespace) -> int:
    import numpy as np

    from cssl.convert.loading import load_model
    from cssl.curation.selection import coverage, normalise, select_covering, select_random
    from cssl.curation.units import BALANCE, select_units, unit_counts, unit_score
    from cssl.data.audio import readable_waves
    from cssl.data.manifest import Manifest, read_manifest, write_manifest
    from cssl.data.rejects import Rejects
    from cssl.probe.features import frame_features
    from cssl.utils.errors import UsageError, UserError
    from cssl.utils.io import atomic_write_lines, check_outputs

    if args.minutes <= 0:
        raise UsageError(f"--minutes {args.minutes}: give a positive budget")
    balance = BALANCE if args.balance is None else args.balance
    if not 0 <= balance <= 1:
        raise UsageError(f"--balance {balance}: give a value from 0 to 1")
    if args.units < 2:
        raise UsageError(f"--units {args.units}: give at least 2 units")
    report, png = (args.out.with_name(args.out.stem + suffix) for suffix in (".report.md", ".png"))
    check_outputs([args.out, report, png], [args.manifest], force=args.force)
    set_threads(args)
    pile, rejects = read_manifest(args.manifest), Rejects()
    ckpt = args.ckpt or default_checkpoint()
    loaded = load_model(ckpt)
    model = loaded.model.eval()
    entries, vectors, frames = [], [], []
    for entry, wave in readable_waves(pile, rejects, "select: embeddings", normalize=loaded.normalize):
        levels = frame_features(model, wave)
        if args.level not in levels:
            raise UsageError(f"--level {args.level!r}: {ckpt} has {', '.join(levels)}")
        entries.append(entry)
        vectors.append(levels[args.level].mean(0).numpy())  # (T, D) -> (D,)
        if args.method == "units":
            frames.append(levels[args.level].numpy())  # (T, D)
    if not entries:
        raise UserError(f"{args.manifest}: no readable utterance ({rejects.summary()})")
    embeddings = normalise(np.stack(vectors))
    durations = [e.duration for e in entries]
    speakers = [e.speaker for e in entries]
    budget = args.minutes * 60
    random_pick = select_random(durations, budget, args.seed)
    known = speakers if any(speakers) else None
    counts = None
    if args.method == "units":
        total = sum(len(f) for f in frames)
        if total < args.units:
            raise UserError(f"{args.manifest}: {total} frames in all, fewer than --units "
                            f"{args.units}: give fewer units")
        counts = unit_counts(frames, args.units, args.seed)  # (N, K)
        picked = select_units(counts, durations, budget, known, balance)
    elif args.method == "cover":
        picked = select_covering(embeddings, durations, budget, args.seed, known)
    else:
        picked = random_pick
    if not picked:
        raise UserError(f"--minutes {args.minutes}: no utterance of {args.manifest} is that short "
                        f"(the shortest is {min(durations):.1f} s)")
    write_manifest(Manifest(pile.root, [entries[i] for i in picked]), args.out)
    if len(rejects):
        rejects.write(args.out.with_name(args.out.stem + ".rejects.tsv"))
    chosen = {
        "method": args.method, "utterances": len(picked), "minutes": sum(durations[i] for i in picked) / 60,
        "speakers": len({speakers[i] for i in picked if speakers[i] is not None}),
        "coverage": coverage(embeddings, picked), "random coverage": coverage(embeddings, random_pick),
    }
    units_line = [] if counts is None else [
        "", (f"Unit coverage (sum over the {args.units} units of share x sqrt(frames picked), as a share of the "
             f"whole pile's, balance {balance:g}): {unit_score(counts, picked, balance):.3f}, random "
             f"{unit_score(counts, random_pick, balance):.3f}.")]
    atomic_write_lines(report, [
        f"# Selection of {args.minutes:g} minutes from {args.manifest}", "",
        f"{len(entries)} utterances embedded with {ckpt} ({args.level}; {len(rejects)} unreadable), "
        f"seed {args.seed}.", "",
        "| method | utterances | minutes | speakers | coverage (mean cosine to the nearest pick) |",
        "|---|---:|---:|---:|---:|",
        f"| {args.method} | {chosen['utterances']} | {chosen['minutes']:.1f} | {chosen['speakers']} | {chosen['coverage']:.3f} |",
        f"| random, same budget and seed | {len(random_pick)} | {sum(durations[i] for i in random_pick) / 60:.1f} | "
        f"{len({speakers[i] for i in random_pick if speakers[i] is not None})} | {chosen['random coverage']:.3f} |",
        *units_line,
    ])
    plot(embeddings, picked, png, f"{args.method}: {len(picked)} of {len(entries)} utterances")
    print(f"{args.out}: {chosen['utterances']} utterances, {chosen['minutes']:.1f} min, {chosen['speakers']} speakers; "
          f"coverage {chosen['coverage']:.3f} (random {chosen['random coverage']:.3f}); report {report}, plot {png}")
    return 0


def plot(embeddings, picked: list[int], png: Path, title: str) -> None:
    """The pile on its first two principal components, the picks marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    centred = embeddings - embeddings.mean(0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ axes[:2].T  # (N, 2)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(xy[:, 0], xy[:, 1], s=6, c="0.75", label="pile")
    ax.scatter(xy[picked, 0], xy[picked, 1], s=18, c="C3", label="picked")
    ax.set(title=title, xlabel="PC 1", ylabel="PC 2")
    ax.legend()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
