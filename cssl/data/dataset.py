"""From a manifest to padded batches: loading, cropping, augmenting, encoding, collating.

Notation: B batch size, T samples (16 kHz), L target length (characters).

An item that cannot be used (unreadable audio, empty transcript...) does not stop the
epoch: the dataset returns a :class:`Reject` in its place, the collate function drops
it and hands it to the training loop inside the batch, and the loop adds it to the
job's :class:`~cssl.data.rejects.Rejects` log.

Randomness (crop offsets, augmentation) comes from a generator seeded by
``(seed, epoch, index)``, so an item is the same whichever worker loads it and a
resumed run sees exactly the data the interrupted one would have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from cssl.data.audio import AudioError, check_length, header, load_audio, normalize_wave
from cssl.data.augment import AugmentConfig, Augmenter
from cssl.data.manifest import Manifest, read_manifest
from cssl.data.rejects import Reject, Rejects
from cssl.data.sampler import BucketBatchSampler
from cssl.text.vocab import Vocabulary
from cssl.utils.config import Count, PositiveInt, Probability
from cssl.utils.errors import DataError
from cssl.utils.seeding import mix_seed


@dataclass
class DataConfig:
    """Where a stage's audio comes from and how it is batched."""

    manifest: str = ""
    """Training manifest (.tsv with optional .wrd/.ltr, or NeMo .jsonl); for pretraining also a sharded corpus (its folder or index.json, from cssl data shard), streamed."""
    valid_manifest: str | None = None
    """Validation manifest, same formats; None skips validation."""
    normalize: bool = False
    """Scale each utterance to zero mean, unit variance (wav2vec 2.0 LARGE does)."""
    min_samples: Count = 8000
    """Utterances shorter than this (16 kHz samples) are left out of the manifest."""
    max_samples: PositiveInt | None = None
    """Utterances longer than this are left out; None keeps all."""
    crop_samples: PositiveInt | None = 250_000
    """Random crop to at most this many samples (pretraining); None feeds whole utterances."""
    max_batch_samples: PositiveInt = 1_400_000
    """Bound on a batch's padded size: batch size x longest utterance, in samples."""
    max_batch_size: PositiveInt | None = None
    """Optional cap on utterances per batch."""
    bucket: bool = True
    """Group utterances of similar length (less padding); False gives plain random batches."""
    max_padding: Probability | None = None
    """Close a batch before its padding passes this share of max_batch_samples; None: no cap."""
    num_workers: Count = 2
    """Data-loader worker processes (0 loads in the training process)."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Waveform augmentation applied to training items."""


@dataclass
class Item:
    """One loaded utterance."""

    index: int
    """Position in the manifest."""
    wave: torch.Tensor
    """Waveform (T,), float32, 16 kHz."""
    target: torch.Tensor | None
    """Character ids (L,), or None for unlabeled data."""


@dataclass
class Batch:
    """Padded utterances and what was skipped while loading them."""

    waves: torch.Tensor
    """(B, T) float32, zero-padded on the right."""
    lengths: torch.Tensor
    """(B,) valid samples per row."""
    indices: list[int]
    """Manifest positions of the rows."""
    targets: torch.Tensor | None = None
    """(B, L) character ids padded with -1; None for unlabeled data."""
    target_lengths: torch.Tensor | None = None
    """(B,) valid target ids per row."""
    rejected: list[Reject] = field(default_factory=list)
    """Items of this batch that were skipped, with their reasons."""

    def __len__(self) -> int:
        return len(self.indices)

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with its tensors on ``device``."""
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.waves), move(self.lengths), self.indices, move(self.targets),
                     move(self.target_lengths), self.rejected)


class AudioDataset(Dataset):
    """Loads manifest entries as :class:`Item` (or :class:`Reject` for unusable ones)."""

    def __init__(
        self,
        manifest: Manifest,
        vocab: Vocabulary | None = None,
        crop_samples: int | None = None,
        normalize: bool = False,
        augment: Augmenter | None = None,
        seed: int = 0,
    ) -> None:
        if vocab is not None and not manifest.labeled:
            raise DataError(f"{manifest.root}: a vocabulary was given but the manifest has entries without text")
        self.manifest = manifest
        self.vocab = vocab
        self.crop_samples = crop_samples
        self.normalize = normalize
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.manifest)

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose crops and augmentations are drawn."""
        self.epoch = epoch

    def lengths(self) -> list[int]:
        """Per-item lengths as batched, for the sampler: the longest augmentation can make them (speed
        perturbation slows some down), capped at the crop size; batches then keep ``max_batch_samples``."""
        cap = self.crop_samples
        longest = self.augment.longest if self.augment is not None else int
        return [longest(e.num_samples) if cap is None else min(longest(e.num_samples), cap) for e in self.manifest]

    def __getitem__(self, index: int) -> Item | Reject:
        entry = self.manifest[index]
        path = self.manifest.audio_path(entry)
        target = None
        if self.vocab is not None:
            ids = self.vocab.encode(entry.text or "")
            if not ids:
                return Reject(str(path), "empty transcript", "the transcript has no letters or digits")
            target = torch.tensor(ids, dtype=torch.long)
        try:
            wave = load_audio(path, normalize=False, expected_samples=entry.num_samples)
        except AudioError as err:
            return Reject(err.path, err.reason, err.detail)
        gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, index))
        if self.augment is not None:
            wave = self.augment(wave, gen)
        wave = random_crop(wave, self.crop_samples, gen)
        if self.normalize:
            wave = normalize_wave(wave)
        return Item(index, wave, target)


def random_crop(wave: torch.Tensor, size: int | None, gen: torch.Generator) -> torch.Tensor:
    """A random window of ``size`` samples (the whole wave if it is shorter or size is None)."""
    if size is None or wave.numel() <= size:
        return wave
    start = int(torch.randint(0, wave.numel() - size + 1, (1,), generator=gen))
    return wave[start : start + size]


def collate(items: list[Item | Reject]) -> Batch:
    """Pads the loaded items into a :class:`Batch`; rejects travel along in ``rejected``."""
    rejected = [it for it in items if isinstance(it, Reject)]
    good = [it for it in items if isinstance(it, Item)]
    lengths = torch.tensor([it.wave.numel() for it in good], dtype=torch.long)
    waves = torch.zeros(len(good), int(lengths.max()) if good else 0)  # (B, T)
    for row, it in enumerate(good):
        waves[row, : it.wave.numel()] = it.wave
    batch = Batch(waves, lengths, [it.index for it in good], rejected=rejected)
    if good and good[0].target is not None:
        batch.target_lengths = torch.tensor([it.target.numel() for it in good], dtype=torch.long)
        batch.targets = torch.full((len(good), int(batch.target_lengths.max())), -1, dtype=torch.long)  # (B, L)
        for row, it in enumerate(good):
            batch.targets[row, : it.target.numel()] = it.target
    return batch


@dataclass
class Loader:
    """A data loader with the pieces a training loop talks to."""

    dataset: AudioDataset
    """The dataset (for ``set_epoch``)."""
    sampler: BucketBatchSampler
    """The sampler (for ``set_epoch``, ``state_dict``, ``padding_fraction``)."""
    loader: DataLoader
    """Iterates :class:`Batch` objects."""
    dropped: int
    """Manifest entries left out by the length filters."""
    rejects: Rejects = field(default_factory=Rejects)
    """Entries left out by the length filters whose audio is not as long as the manifest claims."""

    def set_epoch(self, epoch: int) -> None:
        """Moves sampler and dataset to ``epoch``."""
        self.sampler.set_epoch(epoch)
        self.dataset.set_epoch(epoch)

    def __iter__(self):
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.sampler)


def build_loader(
    cfg: DataConfig,
    manifest: str | Path | Manifest,
    vocab: Vocabulary | None = None,
    train: bool = True,
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
    filter_lengths: bool = True,
) -> Loader:
    """Reads and length-filters the manifest, then wires dataset, sampler and DataLoader.

    Validation loaders (``train=False``) neither crop, augment nor shuffle;
    ``filter_lengths=False`` keeps every utterance (a dev set that is scored must be
    scored whole).
    """
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest)
    rejects = Rejects()
    if filter_lengths:
        kept, dropped = manifest.filter_length(cfg.min_samples, cfg.max_samples)
        if dropped:
            _check_dropped_lengths(manifest, {id(e) for e in kept}, rejects)
        manifest = kept
    else:
        dropped = 0
    if len(manifest) == 0:
        raise DataError(f"{manifest.root}: no utterance passes the length filters "
                         f"(min_samples={cfg.min_samples}, max_samples={cfg.max_samples})")
    augment = Augmenter(cfg.augment) if train else None
    dataset = AudioDataset(manifest, vocab, cfg.crop_samples if train else None, cfg.normalize, augment, seed)
    sampler = BucketBatchSampler(
        dataset.lengths(),
        max_batch_samples=cfg.max_batch_samples,
        max_batch_size=cfg.max_batch_size,
        bucket=cfg.bucket,
        max_padding=cfg.max_padding,
        shuffle=train,
        seed=seed,
        num_replicas=num_replicas,
        rank=rank,
    )
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.num_workers,
        persistent_workers=False,
        prefetch_factor=2 if cfg.num_workers > 0 else None,
        # Worker seeds come from this generator, not torch's global one: creating an
        # iterator then leaves the training RNG untouched, so a resumed run stays exact.
        generator=torch.Generator().manual_seed(seed),
    )
    return Loader(dataset, sampler, loader, dropped, rejects)


def _check_dropped_lengths(manifest: Manifest, kept: set[int], rejects: Rejects) -> None:
    """Reads the headers of entries the length filters left out: a wrong count in the manifest
    must not drop a usable file silently (kept entries are checked when they load)."""
    for entry in manifest:
        if id(entry) in kept:
            continue
        path = manifest.audio_path(entry)
        try:
            frames, rate, _ = header(path)
            check_length(path, entry.num_samples, frames, rate)
        except AudioError as err:
            rejects.add(err.path, err.reason, err.detail)
