"""Phone alignments: which phone each stretch of an utterance holds, in samples at 16 kHz.

A manifest ``NAME.tsv`` (or ``NAME.jsonl``) may have ``NAME.phones.jsonl`` beside it, one
JSON line per utterance::

    {"path": "dev/en-us_m3_p48_r171/0000012.flac", "phones": [["sil", 0, 2400], ["h", 2400, 3100], ...]}

``path`` is the manifest's path of the audio; each phone is ``[name, start, end)`` in
samples at 16 kHz, in order, without gaps, covering the utterance from 0 to its length.
Names are eSpeak NG phoneme mnemonics without stress marks (``oU``, ``3:``, ``D``);
pauses, leading and trailing silence are ``sil``. The synthetic corpus writes these
files for every split (:mod:`cssl.synth.corpus`); the phonetic probe reads them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cssl.utils.errors import DataError
from cssl.utils.io import atomic_write_lines

SILENCE = "sil"
"""Name of pauses and of the silence around the speech."""

SUFFIX = ".phones.jsonl"
"""What replaces a manifest's suffix to name its alignment file."""

_STRESS = str.maketrans("", "", "',")
"""eSpeak NG marks primary stress with ' and secondary stress with , before a vowel."""


@dataclass(frozen=True)
class Segment:
    """One phone of an utterance: ``[start, end)`` in samples at 16 kHz."""

    phone: str
    """Phone name (``sil`` for silence)."""
    start: int
    """First sample."""
    end: int
    """One past the last sample."""


def phone_name(mnemonic: str) -> str:
    """The phone of an eSpeak NG mnemonic: stress marks dropped, pauses (``_``, ``_:``, ``_!``) as ``sil``."""
    name = mnemonic.translate(_STRESS)
    return SILENCE if not name or name.startswith("_") else name


def segments_from_onsets(onsets: Sequence[tuple[str, int]], speech: tuple[int, int], length: int) -> list[Segment]:
    """Contiguous segments covering ``[0, length)`` from phone onsets.

    ``onsets`` are ``(mnemonic, sample)`` in spoken order (positions in the final audio);
    each phone lasts until the next onset, the last one until the end of ``speech``
    (``(start, end)`` of the audio that holds speech). Everything before the first onset
    or after ``speech``, and pauses, is silence; phones squeezed to nothing by the speech bounds are left
    out, and neighbouring silences merge.
    """
    first, last = speech
    if not 0 <= first <= last <= length:
        raise ValueError(f"speech {speech} is not inside [0, {length}]")
    cuts = [min(max(sample, first), last) for _, sample in onsets] + [last]
    pieces = [(SILENCE, 0, cuts[0])]  # up to the first onset
    pieces += [(phone_name(m), cuts[i], cuts[i + 1]) for i, (m, _) in enumerate(onsets)]
    pieces.append((SILENCE, last, length))
    segments: list[Segment] = []
    for phone, start, end in pieces:
        if end <= start:
            continue
        if segments and segments[-1].phone == phone == SILENCE:
            segments[-1] = Segment(SILENCE, segments[-1].start, end)
        else:
            segments.append(Segment(phone, start, end))
    return segments


def alignment_path(manifest: str | Path) -> Path:
    """The alignment file beside a manifest: ``dev.tsv`` -> ``dev.phones.jsonl``."""
    manifest = Path(manifest)
    return manifest.with_name(manifest.name.rsplit(".", 1)[0] + SUFFIX)


def alignment_lines(items: Iterable[tuple[str, Sequence[Segment]]]) -> list[str]:
    """The JSON lines of ``(path, segments)`` pairs."""
    return [json.dumps({"path": path, "phones": [[s.phone, s.start, s.end] for s in segs]}) for path, segs in items]


def write_alignments(path: str | Path, items: Iterable[tuple[str, Sequence[Segment]]]) -> None:
    """Writes an alignment file atomically."""
    atomic_write_lines(Path(path), alignment_lines(items))


def read_alignments(path: str | Path) -> dict[str, list[Segment]]:
    """Alignments by audio path; a malformed line is an error naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise DataError(f"cannot read the phone alignments {path}: {err.strerror or err}") from err
    alignments: dict[str, list[Segment]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            segments = [Segment(str(p), int(s), int(e)) for p, s, e in record["phones"]]
            alignments[str(record["path"])] = segments
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(
                f"{path}, line {number}: not an alignment line ({err}); expected "
                '{"path": ..., "phones": [[name, start, end], ...]}'
            ) from err
        if any(s.end <= s.start for s in segments) or any(a.end != b.start for a, b in zip(segments, segments[1:])):
            raise DataError(f"{path}, line {number}: phones must be non-empty, in order and without gaps")
    return alignments


def frame_labels(segments: Sequence[Segment], num_frames: int, hop: int, field: int) -> list[str]:
    """The phone at the centre of each of ``num_frames`` frames (frame t covers
    ``[t * hop, t * hop + field)``); frames past the last segment take its phone."""
    labels = []
    i = 0
    for t in range(num_frames):
        centre = t * hop + field // 2
        while i + 1 < len(segments) and segments[i].end <= centre:
            i += 1
        labels.append(segments[i].phone)
    return labels
