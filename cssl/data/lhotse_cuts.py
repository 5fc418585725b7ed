"""lhotse CutSet manifests (``*_cuts_*.jsonl.gz``, as icefall and NeMo recipes write them), read
without lhotse.

Each line is a cut: its ``recording`` (``sources``, ``sampling_rate``, ``duration``) and its
``supervisions`` (``text``, ``speaker``). A cut that covers its whole recording, from one
audio file, becomes a manifest entry (text: the supervisions' texts joined; speaker: the
first one's). Cuts that are segments of a longer recording, whose audio is a URL, a command
or in memory, that select some channels of a multi-channel recording, or whose recording has
transforms (volume, speed, resampling) are refused with the line and the cut's id: cssl reads
one file per utterance, every channel mixed, as it is. Relative source paths are taken from the
working folder, as lhotse does.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from cssl import SAMPLE_RATE
from cssl.data.entries import Entry, Manifest, ManifestError

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
                    where = f"{path}:{lineno}"
                    try:
                        cut = json.loads(line)
                    except json.JSONDecodeError as err:
                        raise ManifestError(f"{where}: not a JSON object ({err.msg}); one cut per line") from None
                    if not isinstance(cut, dict):
                        raise ManifestError(f"{where}: a JSON {type(cut).__name__}, not a cut (one JSON object per line)")
                    entries.append(_entry(cut, where))
    except (OSError, EOFError, UnicodeDecodeError) as err:
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
    for key, holder, what in (("duration", cut, "the cut's duration"), ("source", sources[0], "its source path"),
                              ("duration", rec, "the recording's duration"),
                              ("sampling_rate", rec, "the recording's sampling_rate")):
        if key not in holder:
            raise ManifestError(f"{where}: cut {name} lacks {what}; write the manifest with lhotse (CutSet.to_file)")
    channels, selected = rec.get("channel_ids") or [0], cut.get("channel", 0)
    chosen = selected if isinstance(selected, list) else [selected]
    if sorted(chosen) != sorted(channels) and len(channels) > 1:
        raise ManifestError(f"{where}: cut {name} selects channel(s) {chosen} of a {len(channels)}-channel recording; "
                            "cssl mixes every channel of a file: write the selected channel as its own file first")
    if rec.get("transforms"):
        kinds = [t.get("name", "?") if isinstance(t, dict) else str(t) for t in rec["transforms"]]
        raise ManifestError(f"{where}: cut {name}: the recording has transforms {kinds}, which cssl does not apply; "
                            "write the transformed audio as files first (lhotse's cuts.save_audios)")
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
