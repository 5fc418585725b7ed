"""The phonetic probe: how much of a model's representation, level by level, tells the phones.

For each level (local tower, every Transformer layer) the frames of a manifest with phone
alignments are clustered by faiss k-means; the quantizer's codes are units already. Each
level's units are scored against the frames' phones (:mod:`cssl.probe.scores`). Frames are
labelled by the phone at their centre; silence counts as a phone (``sil``).

``cssl probe CKPT MANIFEST`` prints the table and draws the PNG; pretraining runs the
same probe at every validation when its validation manifest has alignments.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cssl.data.alignment import Segment, alignment_path, frame_labels, read_alignments
from cssl.data.audio import AudioError, load_audio
from cssl.data.manifest import Manifest, read_manifest
from cssl.model import Wav2Vec2Model
from cssl.model.quantizer import GumbelQuantizer
from cssl.probe.features import CODES, frame_features
from cssl.probe.scores import UnitScores, kmeans, unit_scores
from cssl.utils.errors import DataError


@dataclass(frozen=True)
class LevelScores:
    """The probe's figures for one level of the model."""

    level: str
    """``local``, ``layer N`` or ``codes``."""
    scores: UnitScores
    """Purities and PNMI of its units."""
    clusters: int | None
    """k of the k-means that made the units (None: the quantizer's own codes)."""


@dataclass
class ProbeResult:
    """Every level's scores, and what they were measured on."""

    levels: list[LevelScores]
    """In model order: local, layer 1..L, codes."""
    utterances: int
    """Utterances probed."""
    frames: int
    """Frames scored."""
    phones: int
    """Distinct phones (silence included) among them."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Utterances left out (no alignment, unreadable), with the reason."""
    seconds: float = 0.0
    """Wall-clock time of the probe."""

    def best(self) -> LevelScores:
        """The k-means level with the highest PNMI (the codes, with more units than k, compare unfairly)."""
        return max((s for s in self.levels if s.clusters is not None), key=lambda s: s.scores.pnmi)

    def table(self) -> str:
        """A markdown table, one row per level."""
        rows = ["| level | units | phone purity | cluster purity | PNMI |", "|---|---:|---:|---:|---:|"]
        for s in self.levels:
            units = f"k-means {s.clusters}" if s.clusters else f"{s.scores.units} codes"
            rows.append(f"| {s.level} | {units} | {s.scores.phone_purity:.3f} | "
                        f"{s.scores.cluster_purity:.3f} | {s.scores.pnmi:.3f} |")
        return "\n".join(rows)

    def summary(self) -> str:
        """One line: what was probed and the best level."""
        best = self.best()
        return (f"probe: {self.utterances} utterances, {self.frames} frames, {self.phones} phones; "
                f"best PNMI {best.scores.pnmi:.3f} at {best.level} ({self.seconds:.1f} s)")


@dataclass
class Probe:
    """Frames of an aligned manifest, loaded once, to probe one or more models on."""

    waves: list[torch.Tensor]
    """16 kHz waveforms (normalised or not, as the models expect)."""
    alignments: list[list[Segment]]
    """Their phone segments."""
    skipped: dict[str, str]
    """Entries left out, with the reason."""

    @classmethod
    def from_manifest(cls, manifest: str | Path, alignments: str | Path | None = None,
                      max_utterances: int | None = 300, normalize: bool = False) -> Probe:
        """The first ``max_utterances`` entries of ``manifest`` that have an alignment (in
        ``alignments``, by default ``NAME.phones.jsonl`` beside the manifest) and decode."""
        path = Path(alignments) if alignments is not None else alignment_path(manifest)
        if not path.is_file():
            raise DataError(f"{manifest} has no phone alignments ({path} is missing); the synthetic corpus "
                            "writes them (cssl data synth), or give --alignments")
        table = read_alignments(path)
        data: Manifest = read_manifest(manifest)
        waves, segments, skipped = [], [], {}
        for entry in data:
            if max_utterances is not None and len(waves) >= max_utterances:
                break
            if entry.path not in table:
                skipped[entry.path] = "no alignment"
                continue
            try:
                waves.append(load_audio(data.audio_path(entry), normalize=normalize))
            except AudioError as err:
                skipped[entry.path] = str(err)
                continue
            segments.append(table[entry.path])
        if not waves:
            raise DataError(f"{manifest}: none of its {len(data)} utterances has an alignment in {path} "
                            "and decodes; check that the alignment paths are the manifest's paths")
        return cls(waves, segments, skipped)

    def run(self, model: Wav2Vec2Model, quantizer: GumbelQuantizer | None = None, clusters: int = 100,
            seed: int = 0, progress: Callable[[int, int], None] | None = None) -> ProbeResult:
        """Scores every level of ``model`` (in eval mode for the probe, restored after)."""
        start = time.monotonic()
        was_training = model.training
        model.eval()
        if quantizer is not None:
            quantizer.eval()
        device = next(model.parameters()).device
        hop = model.feature_extractor.stride
        field_ = model.feature_extractor.receptive_field
        levels: dict[str, list[np.ndarray]] = {}
        phones: list[str] = []
        try:
            for i, (wave, segments) in enumerate(zip(self.waves, self.alignments, strict=True)):
                features = frame_features(model, wave.to(device), quantizer)
                frames = next(iter(features.values())).shape[0]
                phones += frame_labels(segments, frames, hop, field_)
                for name, value in features.items():
                    levels.setdefault(name, []).append(value.numpy())
                if progress is not None:
                    progress(i + 1, len(self.waves))
        finally:
            model.train(was_training)
            if quantizer is not None:
                quantizer.train(was_training)
        _, phone_ids = np.unique(np.array(phones), return_inverse=True)
        scored = []
        for name, parts in levels.items():
            values = np.concatenate(parts)
            if name == CODES:
                scored.append(LevelScores(name, unit_scores(phone_ids, values), None))
            else:
                k = min(clusters, len(values))
                scored.append(LevelScores(name, unit_scores(phone_ids, kmeans(values, k, seed=seed)), k))
        return ProbeResult(scored, len(self.waves), len(phones), int(phone_ids.max()) + 1, dict(self.skipped),
                           time.monotonic() - start)


def plot_probe(result: ProbeResult, path: str | Path, title: str = "phonetic probe") -> None:
    """Writes a PNG: PNMI, phone purity and cluster purity per level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cssl.utils.io import atomic_write

    names = [s.level for s in result.levels]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names)), 3.6))
    for offset, label, values in (
        (-0.27, "PNMI", [s.scores.pnmi for s in result.levels]),
        (0.0, "phone purity", [s.scores.phone_purity for s in result.levels]),
        (0.27, "cluster purity", [s.scores.cluster_purity for s in result.levels]),
    ):
        ax.bar(x + offset, values, width=0.26, label=label)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.set_title(f"{title}\n{result.utterances} utterances, {result.frames} frames, {result.phones} phones")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
