"""lhotse CutSet manifests (``*_cuts_*.jsonl.gz``, as icefall and NeMo recipes write them), read
without lhotse.

Each line is a cut: its ``recording`` (``sources``, ``sampling_rate``, ``duration``) and its
``supervisions`` (``text``, ``speaker``). A cut that covers its whole recording, from one
audio file, becomes a manifest entry (text: the supervisions' texts joined; speaker: the
first one's). Cuts that are segments of a longer recording, or whose audio is a URL, a
command or in memory, are refused with the line and the cut's id: cssl reads one file per
utterance. Relative source paths are taken from the working folder, as lhotse does.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from cssl import SAMPLE_RATE
from cssl.data.manifest import Entry, Manifest, ManifestError

TOLERANCE_S = 1e-3


def is_cuts_file(path: Path) -> bool:
    """A ``.jsonl.gz`` file, or a ``.jsonl`` whose first record has a ``recording``."""
    if path.name.endswith(".jsonl.gz"):
        return True
    if path.suffix != ".jsonl":
        return False
    with path.open(encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict) and "recording" in json.loads(first)
    except json.JSONDecodeError:
        return False


def read_cuts(path: str | Path) -> Manifest:
    """The whole-recording cuts of a lhotse CutSet manifest as a :class:`Manifest`."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    entries = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if line.strip():
                    entries.append(_entry(json.loads(line), f"{path}:{lineno}"))
    except (OSError, EOFError, json.JSONDecodeError) as err:
        raise ManifestError(f"{path}: not a readable lhotse CutSet ({type(err).__name__}: {err})") from None
    return Manifest(Path.cwd(), entries)


def _entry(cut: dict, where: str) -> Entry:
    rec = cut.get("recording")
    if not isinstance(rec, dict):
        raise ManifestError(f"{where}: a cut without its recording (a lazy or MixedCut manifest is not supported)")
    name = cut.get("id", "?")
    sources = rec.get("sources", [])
    if len(sources) != 1 or sources[0].get("type") != "file":
        kinds = [s.get("type") for s in sources]
        raise ManifestError(f"{where}: cut {name}: audio sources {kinds}; cssl reads cuts of one audio file")
    start, duration = float(cut.get("start", 0.0)), float(cut["duration"])
    if start > TOLERANCE_S or abs(duration - float(rec["duration"])) > TOLERANCE_S:
        raise ManifestError(f"{where}: cut {name} is a segment ({start:.2f}+{duration:.2f} s) of recording "
                            f"{rec.get('id')} ({float(rec['duration']):.2f} s); cssl reads whole-recording cuts: "
                            "write the segments as files first (lhotse's cuts.save_audios)")
    sups = cut.get("supervisions") or []
    texts = [s["text"] for s in sups if s.get("text")]
    speaker = next((s["speaker"] for s in sups if s.get("speaker")), None)
    return Entry(str(sources[0]["source"]), round(duration * SAMPLE_RATE), " ".join(texts) if texts else None,
                 None if speaker is None else str(speaker))
