"""Real speech: single spoken words from speakers never heard in training, against PocketSphinx.

    python benchmarks/real_speech.py [--data ../shared/data] [--out runs/real-speech] [--steps 3000]
                                     [--corpora sc,fsdd] [--arms scratch,shipped,real] [--seeds 3]
                                     [--pooled] [--threads 2]
    python benchmarks/real_speech.py --out runs/real-speech --report [--ensemble]

Runs only where the development recordings are (``--data``: ``fsdd/`` and ``speechcommands-a/``);
otherwise it says so and exits 0. Two corpora:

- ``sc``: Speech Commands v0.02, speaker half A (10 command words). The speakers are split three
  ways by a seeded shuffle (``--seed``): train, dev (early stopping) and test (reported). Every clip
  of a speaker, ``_unknown_`` words included, goes with that speaker, so no test speaker is heard
  in training or in pretraining on the real pool; the labeled sets hold the 10 commands only.
- ``fsdd``: the Free Spoken Digit Dataset, 4 speakers for training (every tenth take held out for
  dev) and the 2 others (``theo``, ``yweweler``) for test, as in docs/own-audio.md.

Arms, each fine-tuned with the keyword preset (``--preset``, configs/finetune/tiny-words.yaml) for
the same number of updates (``--steps``; the best dev checkpoint is scored), once per training
seed (``--seeds``: initial weights, batches, masks, augmentation; the split stays the same):

- ``scratch``: the same model, randomly initialised, everything trained;
- ``shipped``: from the shipped checkpoint (pretrained on synthetic speech only);
- ``real``: from the shipped real-speech checkpoint (``--real``, ``cssl/assets/tiny-real-pretrained.pt``),
  pretrained on every clip of ``benchmarks/real_corpora.py``'s pool: no test speaker of this benchmark
  (at ``--seed 0``) or of the LibriSpeech one; a checkpoint that heard a test speaker is refused with the
  speakers named. (Until this version ``real`` was the synthetic checkpoint pretrained 2,000 more updates
  inside the benchmark on the corpora's non-test clips: the rows of docs/real-speech.md that say so.);
- ``synth``: from scratch, with ``--synthetic`` clips of the corpus's words spoken by 200 eSpeak NG
  voices (``cssl data synth --keywords``; their train split) added to the training set;
- ``--init NAME=CKPT``: any other starting point (a transformers folder, a fairseq checkpoint...).

Every arm trains on the corpus's training clips, or with ``--pooled`` on every labeled real clip at
hand that no test or dev speaker of the corpus says: its own training clips, the other words its train
speakers say (Speech Commands' ``_unknown_`` clips, named by their file names), and the other corpus's
train and dev clips whenever its recordings are in ``--data`` (so Speech Commands' digits and commands
join FSDD's four speakers, and FSDD's digits join Speech Commands). Its runs are named ``ARM, pooled``.

Scoring on the test split: greedy; beam search restricted to the corpus's words (``--lexicon``:
any number of them, at the word score chosen on dev); and the grammar of exactly one of them per
clip (``--grammar``, the exact CTC likelihood of each word); and that grammar with each clip also
heard at 0.9 and 1.1 times its speed (``--speeds 0.9,1.0,1.1``: the mean log-likelihood of each word
over the three decides; the preset trains with these speed factors). The peer, PocketSphinx 5.1.1 with a
JSGF grammar of the same words (one per clip, as ``--grammar``), is measured on the same clips in the
same run when it is installed (``pip install -e .[bench]``). CPU minutes are counted per arm
(user + system time of the training process).

The table gives the mean and standard deviation over the seeds of each figure; the comparison
with scratch compares means. Writes ``results.json``, ``table.md`` and ``real_speech.png`` into
``--out``. Runs finished earlier (their ``result.json``) are reused, and an interrupted run continues exactly
from its newest checkpoint (every ``SAVE_EVERY`` updates; its CPU minutes then count only the part run since),
so an interrupted benchmark resumes.
``--report`` trains nothing: it tables every run finished under ``--out`` (made by any invocation, with
any ``--set``/``--tag`` or ``--pooled``) and the peer, measured again on the same test clips when
PocketSphinx is installed (else as measured last). ``--report --ensemble`` also decodes the seeds of each arm
that has two or more as one ensemble (each frame's probabilities averaged, ``cssl evaluate --ensemble``): a row
``ARM, ensemble`` whose CPU minutes are its members' sum.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pocketsphinx_peer  # noqa: E402
import real_corpora  # noqa: E402
from real_corpora import COMMANDS, DIGITS  # noqa: E402

from cssl.cli.options import seed_list  # noqa: E402
from cssl.data.manifest import Entry, Manifest, write_manifest  # noqa: E402
from cssl.experiments.label_budget import checkpoint_tag, mean_cell, mean_spread  # noqa: E402
from cssl.experiments.steps import PRETRAINED, finetune, interrupted  # noqa: E402
from cssl.utils.config import preset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ("sc", "fsdd")
ARMS = ("scratch", "synth", "shipped", "real")
WORDS = {"sc": COMMANDS, "fsdd": DIGITS}
"""The words of each corpus (its ``words.txt``)."""
MIN_SAMPLES = 3200
"""0.2 s: the shortest FSDD takes are a little longer; shorter clips are dropped by both stages."""
SAVE_EVERY = 500
"""Updates between a run's checkpoints (the two newest kept): an interrupted run resumes from the last."""


def cpu_minutes_of_children() -> float:
    """User + system CPU time of the finished child processes so far, in minutes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) / 60


def read_corpus(corpus: str, data: Path, seed: int) -> tuple[dict[str, Manifest], dict[str, list[Entry]]]:
    """The labeled train/dev/test clips of a corpus and every word its train and dev speakers say
    (:mod:`real_corpora`: the split every benchmark and pretraining run shares)."""
    parts = real_corpora.read_corpus(corpus, data, seed)
    return parts.labeled, {name: parts.spoken[name] for name in ("train", "dev")}


def pooled_train(corpus: str, spoken: dict[str, dict[str, list[Entry]]], out: Path) -> Path:
    """The ``--pooled`` training set for ``corpus``: every word its train speakers say (Speech Commands'
    ``_unknown_`` words too) and every labeled clip of the other corpora's non-test speakers."""
    entries = list(spoken[corpus]["train"])
    entries += [e for other, parts in spoken.items() if other != corpus for part in parts.values() for e in part]
    path = out / "train-pooled.jsonl"
    write_manifest(Manifest(out, entries), path)
    print(f"{corpus} pooled train: {len(entries)} clips, {len({e.speaker for e in entries})} speakers, "
          f"{len({e.text for e in entries})} words", flush=True)
    return path


DECODERS = ("greedy", "lexicon", "grammar", "speeds")
"""How each model's test transcripts are made: greedy; beam search over the word list (any number of its
words); the grammar of exactly one listed word per clip (``--grammar``: PocketSphinx's JSGF constraint);
the grammar with each clip also heard at the training's other speed factors (``--speeds``, :data:`SPEEDS`)."""
SPEEDS = (0.9, 1.0, 1.1)
"""Speed factors of the ``speeds`` decoder: those of the keyword preset's speed perturbation."""


def score(models: list[Path], dev: Path, test: Path, words: Path, out: Path, row: dict) -> dict:
    """Adds to ``row`` the test WER/CER of ``models`` (one checkpoint, or an ensemble of several) under each
    decoder it lacks, with the empty-hypothesis count; the word-list search's word score is chosen on
    ``dev`` (``cssl lm tune --lexicon``)."""
    from cssl.decode.lm_tuning import tune_lm
    from cssl.decode.recognizer import Recognizer
    from cssl.score.evaluation import evaluate_manifest

    def recognizer(**kwargs) -> Recognizer:
        return Recognizer.from_checkpoint(models[0], ensemble=models[1:], **kwargs)

    for decoder in (d for d in DECODERS if d not in row):
        kwargs = {"grammar": str(words)} if decoder in ("grammar", "speeds") else {}
        if decoder == "speeds":
            kwargs["speeds"] = SPEEDS
        if decoder == "lexicon":
            tuning = tune_lm(recognizer(), dev, None, lexicon=words, progress=False)
            row["word_score"] = tuning.word_score
            kwargs = {"lexicon": str(words), "word_score": tuning.word_score}
        per_utt = out / f"test_{decoder}.jsonl"
        ev = evaluate_manifest(recognizer(**kwargs), test, per_utt, progress=False)
        empty = sum(not json.loads(line)["hypothesis"].strip() for line in per_utt.read_text().splitlines())
        row[decoder] = {"wer": ev.wer, "cer": ev.cer, "empty": empty, "utterances": ev.utterances}
        print(f"  {decoder:>8}: WER {ev.wer:.3f} CER {ev.cer:.3f} ({empty} empty of {ev.utterances})", flush=True)
    return row


def rescored(row: dict, models: list[Path], split: Path, folder: Path) -> dict:
    """``row`` of a finished run (or ensemble) in ``folder``, scored by the decoders added since it was written
    (on the test clips of ``split``, the corpus folder) and saved back to its ``result.json``."""
    if not set(DECODERS) <= set(row):
        score(models, split / "dev.jsonl", split / "test.jsonl", split / "words.txt", folder, row)
        (folder / "result.json").write_text(json.dumps(row), encoding="utf-8")
    return row


def with_synthetic(train: Path, words: list[str], count: int, out: Path, seed: int) -> Path:
    """``train`` plus the train split of a synthetic keyword corpus of ``count`` clips of ``words``."""
    from cssl.data.manifest import read_manifest
    from cssl.synth.corpus import synthesize_corpus

    summary = synthesize_corpus(out / "corpus", num_utterances=count, seed=seed, num_speakers=200, keywords=words)
    real, synthetic = read_manifest(train), read_manifest(summary.manifest("train", ".jsonl"))
    merged = [Entry(str(m.audio_path(e)), e.num_samples, e.text, e.speaker) for m in (real, synthetic) for e in m]
    path = out / f"{train.stem}+synthetic.jsonl"
    write_manifest(Manifest(out, merged), path)
    return path


def best_step(run: Path) -> int | None:
    valid = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"valid"' in line]
    return min(valid, key=lambda r: (r["wer"], r["step"]))["step"] if valid else None


def by_arm(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Runs by (corpus, arm), in the order of the rows (each arm's seeds follow one another)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["corpus"], r["arm"]), []).append(r)
    return groups


def table(rows: list[dict], peers: dict[str, dict]) -> str:
    groups = by_arm(rows)
    heads = " | ".join(f"{m.upper()} {d}" for d in DECODERS for m in ("wer", "cer"))
    lines = [f"| corpus | arm | seeds | updates (best at) | train CPU min (mean; ensemble: sum) | {heads} | empty (greedy, mean) |",
             "|---|---|---:|---|---:|" + "---:|" * (2 * len(DECODERS) + 1)]
    for (corpus, arm), runs in groups.items():
        updates = ", ".join(f"{r['steps']} ({r['best_step']})" for r in runs)
        cpu = sum(r["cpu_min"] for r in runs) / len(runs)
        empty = sum(r["greedy"]["empty"] for r in runs) / len(runs)
        cells = " | ".join(mean_cell(runs, d, m) for d in DECODERS for m in ("wer", "cer"))
        seeds = f"{len(runs[0]['members'])} in one" if "members" in runs[0] else str(len(runs))
        lines.append(f"| {corpus} | {arm} | {seeds} | {updates} | {cpu:.1f} | {cells} | {empty:g} |")
    for corpus, p in peers.items():
        cells = " | ".join(f"{p['wer']:.3f} | {p['cer']:.3f}" if d == "grammar" else "- | -" for d in DECODERS)
        lines.append(f"| {corpus} | PocketSphinx + grammar | - | - | {p['cpu_min']:.1f} (decoding) | {cells} | "
                     f"{p['empty']} |")
    lines += ["", "| corpus | arm | WER lexicon vs scratch | WER grammar vs scratch | WER speeds vs scratch "
              "| WER grammar / PocketSphinx's |", "|---|---|---:|---:|---:|---:|"]
    for (corpus, arm), runs in groups.items():
        cells = []
        for decoder in ("lexicon", "grammar", "speeds"):
            wer = mean_spread(runs, decoder, "wer")[0]
            scratch = groups.get((corpus, "scratch"))
            change = wer / mean_spread(scratch, decoder, "wer")[0] - 1 if scratch and arm != "scratch" else None
            cells.append("-" if change is None else f"{change:+.1%} ({'lower' if change < 0 else 'higher'})")
        peer = peers.get(corpus)
        grammar = mean_spread(runs, "grammar", "wer")[0]
        cells.append(f"{grammar / peer['wer']:.2f}x" if peer else "not measured")
        lines.append(f"| {corpus} | {arm} | {' | '.join(cells)} |")
    return "\n".join(lines)


def plot(rows: list[dict], peers: dict[str, dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = [c for c in CORPORA if any(r["corpus"] == c for r in rows)]
    widest = max(len({r["arm"] for r in rows if r["corpus"] == c}) for c in corpora)
    fig, axes = plt.subplots(1, len(corpora), figsize=(max(5.5, 1.1 * widest) * len(corpora), 5.5), squeeze=False)
    for ax, corpus in zip(axes[0], corpora):
        arms = {arm: runs for (c, arm), runs in by_arm(rows).items() if c == corpus}
        xs = range(len(arms))
        width = 0.8 / len(DECODERS)
        for i, decoder in enumerate(DECODERS):
            stats = [mean_spread(runs, decoder, "wer") for runs in arms.values()]
            shift = (i - (len(DECODERS) - 1) / 2) * width
            ax.bar([x + shift for x in xs], [m for m, _ in stats], yerr=[sd for _, sd in stats], capsize=3,
                   width=width, label=f"grammar, speeds {'/'.join(f'{f:g}' for f in SPEEDS)}" if decoder == "speeds" else decoder)
        if corpus in peers:
            ax.axhline(peers[corpus]["wer"], color="k", linestyle="--", label="PocketSphinx + grammar")
        # One tick per arm: its name, the updates of its runs and its number of seeds.
        ticks = [f"{arm.replace(', ', chr(10))}\n{'/'.join(sorted({str(r['steps']) for r in runs}))} updates, "
                 + (f"{len(runs[0]['members'])} models" if "members" in runs[0] else
                    f"{len(runs)} seed{'s' if len(runs) > 1 else ''}") for arm, runs in arms.items()]
        ax.set_xticks(list(xs), ticks, fontsize=7, rotation=35, ha="right")
        top = max([m + sd for runs in arms.values() for m, sd in (mean_spread(runs, d, "wer") for d in DECODERS)]
                  + ([peers[corpus]["wer"]] if corpus in peers else []))
        first = next(iter(arms.values()))[0]
        ax.set(ylim=(0, min(1.05, 1.3 * top)), ylabel="test WER (unseen speakers; mean, std over seeds)",
               title=f"{corpus}: {first['test_utterances']} test clips")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def run_arm(args: argparse.Namespace, corpus: str, arm: str, seed: int, init: Path | None,
            splits: dict[str, Path], words: list[str]) -> dict:
    """One arm fine-tuned and scored once, with training seed ``seed``; its result row (reused when
    ``result.json`` is there)."""
    start = PRETRAINED if arm == "shipped" else init
    # A checkpoint's tag in the folder name: a new checkpoint gets new runs, not the old one's results.
    tag = "-".join([f"{arm}-{checkpoint_tag(start)}" if start else arm, *([args.tag] if args.tag else []),
                    *(["pooled"] if args.pooled else [])])
    run = args.out / corpus / f"{tag}-seed{seed}"
    done = run / "result.json"
    if done.exists():  # scored again only by the decoders added since
        row = json.loads(done.read_text())
        if row["steps"] != args.steps:
            raise SystemExit(f"{run} holds a finished run of {row['steps']} updates, not --steps {args.steps}: "
                             f"name the new runs with --tag (say --tag {args.steps // 1000}k) or choose another --out")
        return rescored(row, [run / row.get("checkpoint", "best.pt")], args.out / corpus, run)
    print(f"== {corpus}, {arm}, seed {seed}: {args.steps} updates", flush=True)
    cpu = cpu_minutes_of_children()
    resumed = interrupted(run)  # an interrupted run continues: its CPU minutes count from here
    train = splits["pooled" if args.pooled else "train"]
    if arm == "synth":  # the synthetic clips are the same for every seed
        train = with_synthetic(train, words, args.synthetic, args.out / corpus / "synthetic", 5)
    best = finetune("scratch" if start is None else "pretrained", train, splits["dev"], run, args.steps, start,
                    # The preset's 50 head-only updates stay on from scratch, as in the recipe run of
                    # docs/real-speech.md; one scratch run here without them stayed all-blank for 2,000
                    # updates (the split differed too: the cause is not isolated).
                    [f"seed={seed}", f"data.min_samples={MIN_SAMPLES}", f"threads={args.threads}",
                     f"save_every={SAVE_EVERY}", *args.set], config=args.preset, resume=True)
    label = f"{arm} ({args.tag})" if args.tag else arm
    row = {"corpus": corpus, "arm": f"{label}, pooled" if args.pooled else label, "seed": seed,
           "init": str(start) if start else None, "steps": args.steps,
           "best_step": best_step(run), "checkpoint": best.name, "cpu_min": cpu_minutes_of_children() - cpu,
           "test_utterances": sum(1 for _ in splits["test"].open()), "resumed": resumed}
    score([best], splits["dev"], splits["test"], args.out / corpus / "words.txt", run, row)
    done.write_text(json.dumps(row), encoding="utf-8")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "real-speech")
    parser.add_argument("--corpora", default=",".join(CORPORA))
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--init", action="append", default=[], metavar="NAME=CKPT", help="another arm")
    parser.add_argument("--preset", type=Path, default=preset("finetune/tiny-words.yaml"))
    parser.add_argument("--steps", type=int, default=3000, help="fine-tuning updates of every arm")
    parser.add_argument("--real", type=Path, default=real_corpora.REAL_PRETRAINED, help="the real-speech checkpoint of the 'real' arm")
    parser.add_argument("--synthetic", type=int, default=5000, help="synthetic keyword clips of the synth arm "
                        "(80%% of them are its train split)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a fine-tuning override for every arm (after the preset's and the arm's own); needs --tag")
    parser.add_argument("--tag", default="", help="names the runs made with --set (folders and table rows)")
    parser.add_argument("--pooled", action="store_true", help="every arm trains on the pooled labeled clips")
    parser.add_argument("--report", action="store_true", help="train nothing: table every run under --out")
    parser.add_argument("--ensemble", action="store_true",
                        help="with --report: also decode each arm's seeds as one ensemble (cssl evaluate --ensemble)")
    parser.add_argument("--seeds", type=seed_list, default=seed_list("3"),
                        help="training seeds per arm: a count N (seeds 1..N) or a comma list (2,3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="seeds the Speech Commands speaker split")
    parser.add_argument("--no-peer", action="store_true", help="leave PocketSphinx out")
    args = parser.parse_args(argv)
    if args.ensemble and not args.report:
        parser.error("--ensemble goes with --report (it decodes finished runs)")
    if args.set and not args.tag:
        parser.error("--set needs --tag (a name for these runs, so that they are not mistaken for the preset's)")
    corpora = [c for c in args.corpora.split(",") if c]
    arms = {a: None for a in args.arms.split(",") if a}
    if not set(corpora) <= set(CORPORA) or not set(arms) <= set(ARMS):
        parser.error(f"--corpora among {CORPORA}, --arms among {ARMS}")
    for spec in args.init:
        name, _, path = spec.partition("=")
        if not name or not path:
            parser.error(f"--init {spec!r}: give NAME=CKPT")
        arms[name] = Path(path)
    folders = {c: args.data / real_corpora.FOLDERS[c] for c in CORPORA}
    missing = [str(folders[c]) for c in corpora if not folders[c].is_dir()]
    if missing:
        print(f"real_speech: skipped, the recordings are not here: {', '.join(missing)}")
        return 0
    if args.report:
        return report(args.out, corpora, not args.no_peer, args.ensemble)
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    if "real" in arms:
        if not args.real.is_file():
            parser.error(f"--real {args.real}: no such checkpoint (make pretrained-real builds the shipped one)")
        arms["real"] = args.real
    splits, words, spoken, tests = {}, {}, {}, {}
    if args.pooled:  # every corpus at hand lends its labeled clips, also one not in --corpora
        for other in (c for c in CORPORA if c not in corpora and folders[c].is_dir()):
            spoken[other] = read_corpus(other, args.data, args.seed)[1]
    for corpus in corpora:
        labeled, spoken[corpus] = read_corpus(corpus, args.data, args.seed)
        tests[corpus] = {e.speaker for e in labeled["test"]}
        words[corpus] = WORDS[corpus]
        splits[corpus] = {}
        for name, part in labeled.items():
            path = args.out / corpus / f"{name}.jsonl"
            write_manifest(part, path)
            splits[corpus][name] = path
            print(f"{corpus} {name}: {len(part)} clips, {len({e.speaker for e in part})} speakers", flush=True)
        (args.out / corpus / "words.txt").write_text("\n".join(words[corpus]) + "\n", encoding="utf-8")
    if args.pooled:
        for corpus in corpora:
            splits[corpus]["pooled"] = pooled_train(corpus, spoken, args.out / corpus)
    for init in (init for init in arms.values() if init is not None):  # none may have heard a test speaker
        for corpus in corpora:
            real_corpora.refuse_checkpoint(init, tests[corpus], corpus)
    rows = []
    for corpus in corpora:
        for arm, init in arms.items():
            for seed in args.seeds:
                rows.append(run_arm(args, corpus, arm, seed, init, splits[corpus], words[corpus]))
    peers = measure_peers(args.out, corpora, words) if not args.no_peer else {}
    write_results(args.out, rows, peers)
    print(f"wall time {(time.monotonic() - started) / 60:.1f} min")
    return 0


def measure_peers(out: Path, corpora: list[str], words: dict[str, list[str]]) -> dict[str, dict]:
    """PocketSphinx with a grammar of the corpus's words on each corpus's test clips (``out/CORPUS/test.jsonl``)."""
    if not pocketsphinx_peer.available():
        print("PocketSphinx is not installed (pip install -e .[bench]): the peer is not measured", flush=True)
        return {}
    peers = {}
    for corpus in corpora:
        peers[corpus] = pocketsphinx_peer.recognize_manifest(out / corpus / "test.jsonl", words[corpus])
        print(f"PocketSphinx on {corpus}: WER {peers[corpus]['wer']:.3f}", flush=True)
    return peers


def write_results(out: Path, rows: list[dict], peers: dict[str, dict]) -> None:
    """``results.json`` (the rows and the peer), ``table.md`` and ``real_speech.png`` in ``out``."""
    text = table(rows, peers)
    (out / "results.json").write_text(json.dumps({"arms": rows, "peers": peers}, indent=1), encoding="utf-8")
    (out / "table.md").write_text(text + "\n", encoding="utf-8")
    plot(rows, peers, out / "real_speech.png")
    print(f"\n# Real speech: test WER on unseen speakers\n\n{text}\n\nplot: {out / 'real_speech.png'}")


def ensembles(out: Path, finished: list[tuple[dict, Path]]) -> list[dict]:
    """One row per (corpus, arm) with two or more finished seeds (``finished``: each run's row and folder): the
    ensemble of the seeds' scored checkpoints (each frame's probabilities averaged, ``cssl evaluate
    --ensemble``), scored as one model. Cached in ``out/CORPUS/ensembles/ARM-seedsS1-S2...``, so a new seed
    makes a new ensemble."""
    groups: dict[tuple[str, str], list[tuple[dict, Path]]] = {}
    for row, run in finished:
        groups.setdefault((row["corpus"], row["arm"]), []).append((row, run))
    rows = []
    for (corpus, arm), runs in groups.items():
        if len(runs) < 2:
            continue
        runs.sort(key=lambda pair: pair[0]["seed"])
        seeds = [r["seed"] for r, _ in runs]
        folder = out / corpus / "ensembles" / f"{runs[0][1].name.rsplit('-seed', 1)[0]}-seeds{'-'.join(map(str, seeds))}"
        done = folder / "result.json"
        if done.exists():
            row = json.loads(done.read_text())
            rows.append(rescored(row, [Path(m) for m in row["members"]], out / corpus, folder))
            continue
        print(f"== {corpus}, {arm}: ensemble of seeds {', '.join(map(str, seeds))}", flush=True)
        folder.mkdir(parents=True, exist_ok=True)
        first = runs[0][0]
        row = {"corpus": corpus, "arm": f"{arm}, ensemble", "seed": "+".join(map(str, seeds)),
               "members": [str(run / r.get("checkpoint", "best.pt")) for r, run in runs], "init": first["init"],
               "steps": first["steps"], "best_step": "/".join(str(r["best_step"]) for r, _ in runs),
               "cpu_min": sum(r["cpu_min"] for r, _ in runs), "test_utterances": first["test_utterances"]}
        split = out / corpus
        score([Path(m) for m in row["members"]], split / "dev.jsonl", split / "test.jsonl", split / "words.txt",
              folder, row)
        done.write_text(json.dumps(row), encoding="utf-8")
        rows.append(row)
    return rows


def report(out: Path, corpora: list[str], peer: bool, ensemble: bool = False) -> int:
    """Tables every finished run under ``out`` (any invocation made it) with the peer: measured now on
    the test clips of ``corpora`` when ``peer`` and PocketSphinx is installed, else as measured last;
    with ``ensemble``, also each arm's seeds decoded together (:func:`ensembles`)."""
    found = sorted(out.glob("*/*-seed*/result.json"))
    if not found:
        print(f"real_speech --report: no finished run under {out}", file=sys.stderr)
        return 1
    finished = [(json.loads(path.read_text()), path.parent) for path in found]
    finished = [(rescored(row, [run / row.get("checkpoint", "best.pt")], out / row["corpus"], run), run)
                for row, run in finished]
    rows = [row for row, _ in finished]
    if ensemble:
        rows += ensembles(out, [(row, run) for row, run in finished if row["corpus"] in corpora])
    rows.sort(key=lambda r: (CORPORA.index(r["corpus"]) if r["corpus"] in CORPORA else len(CORPORA),
                             r["arm"] != "scratch", r["arm"], str(r["seed"])))
    old = out / "results.json"
    peers = json.loads(old.read_text()).get("peers", {}) if old.exists() else {}
    tested = [c for c in corpora if (out / c / "test.jsonl").is_file()]
    if peer and tested:
        peers.update(measure_peers(out, tested, WORDS))
    write_results(out, rows, peers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
