"""Splitting a manifest into train, dev and test: by speaker (disjoint voices) or by utterance.

Evaluating on voices heard in training flatters a recogniser; a speaker split keeps every
speaker's utterances in one part. Speakers are shuffled with the seed and dealt to test,
then dev, until each holds its share of the utterances; the rest is train.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Literal

from cssl.data.manifest import Manifest, ManifestError
from cssl.utils.errors import UsageError

SplitBy = Literal["speaker", "utterance"]
SPLITS = ("train", "dev", "test")


def split_manifest(manifest: Manifest, dev: float, test: float, by: SplitBy = "speaker",
                   seed: int = 0, source: str = "manifest") -> dict[str, Manifest]:
    """``{"train", "dev", "test"}`` parts of ``manifest`` holding about ``1 - dev - test``, ``dev``, ``test``
    of its utterances; with ``by="speaker"`` no speaker is in two parts."""
    if not (0 <= dev < 1 and 0 <= test < 1 and dev + test < 1):
        raise UsageError(f"--dev {dev} and --test {test}: each in [0, 1), together below 1 (the rest is train)")
    if by == "speaker":
        missing = sum(e.speaker is None for e in manifest)
        if missing:
            raise ManifestError(f"{source}: {missing} of {len(manifest)} entries name no speaker; build a .jsonl "
                                "manifest with cssl data manifest --speaker-pattern, or split --by utterance")
        groups: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(manifest):
            groups[e.speaker].append(i)  # type: ignore[index]
        units = [groups[s] for s in sorted(groups)]
    else:
        units = [[i] for i in range(len(manifest))]
    wanted = sum(x > 0 for x in (dev, test)) + 1
    if len(units) < wanted:
        raise UsageError(f"{source}: {len(units)} {by}s cannot fill {wanted} non-empty parts")
    random.Random(seed).shuffle(units)
    parts: dict[str, list[int]] = {name: [] for name in SPLITS}
    targets = {"test": test * len(manifest), "dev": dev * len(manifest)}
    for k, unit in enumerate(units):
        name = next((n for n in ("test", "dev") if targets[n] > 0 and len(parts[n]) < targets[n]), "train")
        if not parts["train"] and k == len(units) - 1:
            name = "train"  # the last unit: train is never left empty
        parts[name] += unit
    return {name: manifest.subset(sorted(idx)) for name, idx in parts.items()}
