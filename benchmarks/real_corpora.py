"""The real-speech corpora of the benchmarks, their speaker splits, and the pretraining pool they leave.

    python benchmarks/real_corpora.py [--data ../shared/data] [--out runs/real-corpus]

Three corpora of real recordings, each split by speaker with a fixed rule, so that every benchmark and
every pretraining run agrees on which voices are test voices:

- ``ls``: Mini LibriSpeech train-clean-5 (read sentences, 28 speakers). Speakers are dealt by a seeded
  shuffle within each sex, so each part is balanced: 4 test speakers (2 F, 2 M), 4 dev, the 20 others
  train (about 3.8 h, enough for a 1-hour label budget).
- ``sc``: Speech Commands v0.02, speaker half A; speakers shuffled with a seed into train, dev (10% of
  the clips) and test (20%), as ``benchmarks/real_speech.py`` always did.
- ``fsdd``: the Free Spoken Digit Dataset; ``theo`` and ``yweweler`` are the test speakers, every tenth
  take of the others is dev.

Speakers are named ``CORPUS:ID`` (``ls:19``, ``sc:0a7c2a8d``, ``fsdd:theo``), so that the three
corpora's ids never collide. The pretraining pool is every clip of every corpus whose speaker is not a
test speaker of any of them (``--out``: ``pretrain.jsonl``, ``pretrain-dev.jsonl`` = 16 utterances of each LibriSpeech
dev speaker, ``test_speakers.json``); :func:`refuse_test_speakers` is the check every benchmark
applies to a pretraining manifest or a pretrained release before it uses it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cssl import REAL_PRETRAINED  # noqa: E402, F401 - the default of the benchmarks' ``real`` arms
from cssl.data.alignment import alignment_path  # noqa: E402
from cssl.data.manifest import Entry, Manifest, ManifestError, write_manifest  # noqa: E402
from cssl.data.scan import ScanConfig, scan_folder  # noqa: E402
from cssl.data.split import split_manifest  # noqa: E402
from cssl.synth.align import align_manifest  # noqa: E402

COMMANDS = "yes no up down left right on off stop go".split()
DIGITS = "zero one two three four five six seven eight nine".split()
FSDD_TEST_SPEAKERS = ("theo", "yweweler")
UNKNOWN = "_unknown_"
LS_SPLIT_SEED = 34
"""Seeds the LibriSpeech speaker shuffle (fixed: every benchmark and pretraining run uses this split)."""
LS_TEST_PER_SEX = 2
LS_DEV_PER_SEX = 2
VALID_PER_SPEAKER = 16
"""Utterances of each LibriSpeech dev speaker in the pretraining validation set."""
FOLDERS = {"ls": "librispeech-mini", "sc": "speechcommands-a", "fsdd": "fsdd"}


@dataclass
class Corpus:
    """One corpus split by speaker: labeled parts, and every clip (labeled or not) of each part's speakers."""

    labeled: dict[str, Manifest]
    """``train``, ``dev``, ``test``: the clips a recogniser is fine-tuned and scored on (absolute paths)."""
    spoken: dict[str, list[Entry]]
    """``train``, ``dev``, ``test``: every clip of the part's speakers, with its word or sentence where known."""

    @property
    def test_speakers(self) -> set[str]:
        return {e.speaker for e in self.spoken["test"]}  # type: ignore[misc]


def scan(folder: Path, labels: str, speaker_pattern: str) -> Manifest:
    manifest, rejects = scan_folder(folder, ScanConfig(labels=labels, speaker_pattern=speaker_pattern))
    print(f"{folder}: {len(manifest)} files, {manifest.hours:.2f} h; {rejects.summary()}", flush=True)
    return manifest


def absolute(manifest: Manifest, entries, prefix: str, text=lambda e: e.text) -> list[Entry]:
    """``entries`` of ``manifest`` with absolute paths and speakers named ``prefix:ID``."""
    return [Entry(str(manifest.audio_path(e)), e.num_samples, text(e), f"{prefix}:{e.speaker}") for e in entries]


def librispeech(folder: Path, seed: int = LS_SPLIT_SEED) -> Corpus:
    """Mini LibriSpeech split by speaker, balanced by sex (SPEAKERS.TXT)."""
    every = scan(folder, "librispeech", r"^(?P<speaker>\d+)-\d+-\d+")
    sexes = speaker_sexes(folder / "SPEAKERS.TXT")
    present = sorted({e.speaker for e in every}, key=int)  # type: ignore[arg-type]
    part_of: dict[str, str] = {}
    for sex in ("F", "M"):
        group = [s for s in present if sexes.get(s) == sex]
        random.Random(f"{seed}-{sex}").shuffle(group)
        for k, speaker in enumerate(group):
            part_of[speaker] = ("test" if k < LS_TEST_PER_SEX else
                                "dev" if k < LS_TEST_PER_SEX + LS_DEV_PER_SEX else "train")
    unknown = [s for s in present if s not in part_of]
    if unknown:
        raise ManifestError(f"{folder / 'SPEAKERS.TXT'}: no sex given for speakers {unknown}")
    parts = {name: absolute(every, [e for e in every if part_of[e.speaker] == name], "ls")  # type: ignore[index]
             for name in ("train", "dev", "test")}
    return Corpus({name: Manifest(Path("/"), entries) for name, entries in parts.items()}, parts)


def speaker_sexes(path: Path) -> dict[str, str]:
    """``{speaker id: "F" or "M"}`` from LibriSpeech's SPEAKERS.TXT (``ID | SEX | SUBSET | MINUTES | NAME``)."""
    sexes = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = [f.strip() for f in line.split("|")]
        if line.startswith(";") or len(fields) < 2:
            continue
        sexes[fields[0]] = fields[1]
    return sexes


def speech_commands(folder: Path, seed: int = 0) -> Corpus:
    """Speaker-disjoint train/dev/test of the 10 commands; every clip of each part's speakers
    (``_unknown_`` clips named by their file name: ``WORD_SPEAKER_nohash_N``)."""
    every = scan(folder, "folder", r"(?P<speaker>[0-9a-f]{8})_nohash_")  # _unknown_/WORD_SPEAKER_nohash_N too
    parts = split_manifest(every, dev=0.1, test=0.2, by="speaker", seed=seed, source=str(folder))

    def word(e: Entry) -> str | None:
        return Path(e.path).name.split("_")[0] if Path(e.path).parent.name == UNKNOWN else e.text

    spoken = {name: absolute(part, part, "sc", word) for name, part in parts.items()}
    labeled = {name: Manifest(Path("/"), [e for e in entries if Path(e.path).parent.name in COMMANDS])
               for name, entries in spoken.items()}
    return Corpus(labeled, spoken)


def fsdd(folder: Path) -> Corpus:
    """4 training speakers (every tenth take for dev) and 2 test speakers."""
    every = scan(folder, "none", r"^\d_(?P<speaker>[a-z]+)_")
    parts: dict[str, list[Entry]] = {"train": [], "dev": [], "test": []}
    for e in every:
        digit, speaker, take = Path(e.path).stem.split("_")  # {digit}_{speaker}_{take}.wav
        part = "test" if speaker in FSDD_TEST_SPEAKERS else "dev" if int(take) % 10 == 0 else "train"
        parts[part] += absolute(every, [e], "fsdd", lambda _: DIGITS[int(digit)])
    return Corpus({name: Manifest(Path("/"), entries) for name, entries in parts.items()}, parts)


def read_corpus(name: str, data: Path, seed: int = 0) -> Corpus:
    """The corpus ``name`` (``ls``, ``sc`` or ``fsdd``) of the folder ``data``; ``seed`` splits Speech Commands."""
    folder = data / FOLDERS[name]
    return librispeech(folder) if name == "ls" else speech_commands(folder, seed) if name == "sc" else fsdd(folder)


def available(data: Path) -> list[str]:
    """The corpora whose folders are in ``data``."""
    return [name for name, sub in FOLDERS.items() if (data / sub).is_dir()]


def refuse_test_speakers(speakers, test_speakers, what: str, benchmark: str) -> None:
    """Raises :class:`ManifestError` naming the test speakers of ``benchmark`` found among ``speakers``."""
    heard = sorted(set(speakers) & set(test_speakers))
    if heard:
        shown = ", ".join(heard[:10]) + (f" and {len(heard) - 10} more" if len(heard) > 10 else "")
        raise ManifestError(f"{what}: holds {len(heard)} test speaker(s) of the {benchmark} benchmark ({shown}); "
                            "pretrain on a manifest without them (python benchmarks/real_corpora.py writes one)")


def pretrained_speakers(checkpoint: Path) -> set[str] | None:
    """Speakers a pretrained release or checkpoint heard: its ``speakers`` record, else its training
    manifest's speakers when that file is still here; None when neither tells."""
    from cssl.train.checkpoint import load_checkpoint
    from pretrain.release import training_speakers

    ckpt = load_checkpoint(checkpoint)
    return set(ckpt["speakers"]) if "speakers" in ckpt else set(training_speakers(ckpt.get("config") or {})) or None


def refuse_checkpoint(checkpoint: Path, test_speakers, benchmark: str) -> None:
    """:func:`refuse_test_speakers` for the speakers a checkpoint heard; says so when it records none."""
    heard = pretrained_speakers(checkpoint)
    if heard is None:
        print(f"{checkpoint}: records no pretraining speakers; cannot check it against the test speakers", flush=True)
    else:
        refuse_test_speakers(heard, test_speakers, str(checkpoint), benchmark)


def first_per_speaker(entries: list[Entry], count: int) -> list[Entry]:
    """The first ``count`` entries of each speaker, speakers in sorted order."""
    per_speaker: dict[str, list[Entry]] = {}
    for e in entries:
        per_speaker.setdefault(e.speaker, []).append(e)  # type: ignore[arg-type]
    return [e for speaker in sorted(per_speaker) for e in per_speaker[speaker][:count]]


def pretraining_pool(data: Path, out: Path, sc_seed: int = 0, align: bool = True) -> dict:
    """Writes the pretraining pool (every clip of non-test speakers of every corpus at hand) and the test
    speakers per corpus into ``out``; returns a summary. With ``align``, the validation set's phone
    alignments too (``pretrain-dev.phones.jsonl``, by synthesis: the pretraining probe reads them)."""
    corpora = {name: read_corpus(name, data, sc_seed) for name in available(data)}
    if not corpora:
        raise FileNotFoundError(f"{data}: none of {sorted(FOLDERS.values())} found")
    out.mkdir(parents=True, exist_ok=True)
    pool = [e for c in corpora.values() for part in ("train", "dev") for e in c.spoken[part]]
    tests = {name: sorted(c.test_speakers) for name, c in corpora.items()}
    unlabeled = [Entry(e.path, e.num_samples, None, e.speaker) for e in pool]
    write_manifest(Manifest(Path("/"), unlabeled), out / "pretrain.jsonl")
    if "ls" in corpora:  # validation: the first utterances of each LibriSpeech dev speaker (in the pool too)
        dev = first_per_speaker(corpora["ls"].spoken["dev"], VALID_PER_SPEAKER)
        write_manifest(Manifest(Path("/"), [Entry(e.path, e.num_samples, None, e.speaker) for e in dev]),
                       out / "pretrain-dev.jsonl")
        if align and not alignment_path(out / "pretrain-dev.jsonl").is_file():  # for the validation probe
            write_manifest(Manifest(Path("/"), dev), out / "pretrain-dev-text.jsonl")
            align_manifest(out / "pretrain-dev-text.jsonl", alignment_path(out / "pretrain-dev.jsonl"))
    (out / "test_speakers.json").write_text(json.dumps(tests, indent=1) + "\n", encoding="utf-8")
    summary = {name: {part: {"clips": len(c.spoken[part]), "speakers": len({e.speaker for e in c.spoken[part]}),
                             "hours": round(sum(e.num_samples for e in c.spoken[part]) / 16000 / 3600, 3)}
                      for part in ("train", "dev", "test")} for name, c in corpora.items()}
    summary["pool"] = {"clips": len(unlabeled), "speakers": len({e.speaker for e in unlabeled}),
                       "hours": round(sum(e.num_samples for e in unlabeled) / 16000 / 3600, 3)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "real-corpus")
    parser.add_argument("--seed", type=int, default=0, help="seeds the Speech Commands speaker split")
    args = parser.parse_args(argv)
    if not available(args.data):
        print(f"{args.data}: no real-speech corpus here; nothing to do")
        return 0
    summary = pretraining_pool(args.data, args.out, args.seed)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
