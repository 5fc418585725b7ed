"""Length-bucketed batch sampler: batches of similar-length utterances under a padded-size bound.

A batch is padded to its longest utterance, so its cost in memory is
``len(batch) * max(lengths in batch)`` samples. :class:`BucketBatchSampler` keeps that
product at or under ``max_batch_samples`` and groups utterances of similar length so
little of it is padding.

The plan of an epoch is a pure function of ``(seed, epoch)`` and the sampler's settings,
so every process computes the same whole plan and then takes its own shard:

1. **Shuffle** the utterance indices (numpy ``Generator`` seeded with ``(seed, epoch)``).
2. **Sort by length** when ``bucket=True``: over the whole set, or, with ``pool_size``,
   only within consecutive pools of that many shuffled items (batches then mix less
   predictably across epochs, at the price of a little more padding). The sort is
   stable, so equal lengths keep their shuffled order and still vary between epochs.
3. **Pack greedily**: walk the ordered items and close a batch when adding the next one
   would break the bound (or ``max_batch_size``). An utterance longer than the bound on
   its own forms a batch alone rather than being dropped. With pools, a batch also
   closes at the end of its pool: the longest items of one pool sit right before the
   shortest of the next, and a batch mixing them would be mostly padding. The packing
   is vectorised: for every start position, the end of the greedy batch starting there
   is found at once by binary lifting over a sparse table of range maxima; only the hop
   from one batch start to the next is a Python loop, with one step per batch.
4. **Even out for replicas**: distributed training hangs when ranks run different numbers
   of steps, so the batch count must be divisible by ``num_replicas``. Batches holding the
   most items are split in two until it is (fewer than ``num_replicas`` splits). Splitting
   only shrinks batches, so the bound still holds, and no utterance is dropped or repeated.
5. **Shuffle the batch order**, so training does not see lengths in a sorted sweep.

Rank ``r`` of ``W`` takes batches ``r, r + W, r + 2W, ...`` of the plan: the shards are
disjoint, together hold every utterance exactly once, and are of equal size.

Resuming: :meth:`BucketBatchSampler.state_dict` records the epoch, the seed and how many
batches this rank has yielded in the epoch; after
:meth:`~BucketBatchSampler.load_state_dict` the next iteration continues right after
them. The count is of batches *yielded by the sampler*; a ``DataLoader`` with workers
draws a few batches ahead of the training step, so a trainer that checkpoints mid-epoch
should store its own count of consumed batches as ``batches_done``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Sampler

__all__ = ["BucketBatchSampler"]


@dataclass(frozen=True)
class _Plan:
    """One epoch's batches, kept as arrays so that only the batches asked for become lists."""

    items: np.ndarray
    """Utterance indices in packing order."""
    offsets: np.ndarray
    """Packed batch ``b`` is ``items[offsets[b]:offsets[b + 1]]``."""
    order: np.ndarray
    """Batch ``i`` of the plan is packed batch ``order[i]``."""

    def __len__(self) -> int:
        return len(self.order)

    def batches(self, positions: slice = slice(None)) -> list[list[int]]:
        """The batches at ``positions`` of the plan, as lists of utterance indices."""
        chosen = self.order[positions]
        starts = self.offsets[chosen].tolist()
        ends = self.offsets[chosen + 1].tolist()
        items = self.items.tolist()
        return [items[start:end] for start, end in zip(starts, ends)]


class BucketBatchSampler(Sampler[list[int]]):
    """Yields batches of utterance indices whose padded size stays under a bound.

    Use it as ``DataLoader(dataset, batch_sampler=sampler, ...)`` and call
    :meth:`set_epoch` before each epoch.

    Args:
        lengths: samples per utterance, already capped at the crop size.
        max_batch_samples: bound on ``len(batch) * max(lengths in batch)``; an utterance
            longer than the bound forms a batch alone.
        max_batch_size: at most this many utterances per batch (``None``: no limit).
        bucket: sort by length before packing; ``False`` packs in shuffled order (plain
            random batches, the baseline that bucketing is measured against).
        shuffle: shuffle utterances and batch order each epoch; ``False`` plans in index
            order, identically every epoch.
        seed: with the epoch, fixes the plan; must be the same in every process.
        num_replicas: number of processes sharing the epoch.
        rank: this process, ``0 <= rank < num_replicas``.
        pool_size: sort by length only within pools of this many shuffled utterances
            (``None``: sort the whole set).
        max_padding: also close a batch before its padding (``len * max - sum(lengths)``)
            would pass this share of ``max_batch_samples`` (``None``: no cap). Few, long
            batches over a small or widely spread set otherwise pad a lot: the greedy batch
            that fills the bound reaches far up the sorted lengths.

    Raises:
        ValueError: on an invalid setting, or when there are fewer utterances than
            replicas (some rank would get no batch at all).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_batch_samples: int,
        max_batch_size: int | None = None,
        bucket: bool = True,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        pool_size: int | None = None,
        max_padding: float | None = None,
    ) -> None:
        super().__init__()
        self.lengths = _as_lengths(lengths)
        _check_positive("max_batch_samples", max_batch_samples)
        _check_positive("max_batch_size", max_batch_size, optional=True)
        _check_positive("num_replicas", num_replicas)
        _check_positive("pool_size", pool_size, optional=True)
        _check_seed(seed)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        if len(self.lengths) < num_replicas:
            raise ValueError(
                f"{len(self.lengths)} utterances cannot be shared among {num_replicas} replicas: "
                "every replica needs at least one batch"
            )
        self.max_batch_samples = int(max_batch_samples)
        self.max_batch_size = None if max_batch_size is None else int(max_batch_size)
        self.bucket = bucket
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.pool_size = None if pool_size is None else int(pool_size)
        if max_padding is not None and not 0 <= max_padding < 1:
            raise ValueError(f"max_padding is a share of max_batch_samples in [0, 1), got {max_padding}")
        self.max_padding = max_padding
        self._epoch = 0
        self._batches_done = 0
        self._cache: tuple[tuple[int, int], _Plan] | None = None
        # Plan now so that a setting that cannot be sharded fails at construction, not
        # minutes into a run; the plan is cached for the first epoch anyway.
        self._plan(self._epoch)

    # ---- epochs and resuming -------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The epoch that the next iteration plans."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch to iterate; moving to another epoch starts it from its first batch.

        Setting the epoch that is already current keeps the position, so a training loop
        may call ``set_epoch`` right after :meth:`load_state_dict` without losing it.
        """
        _check_epoch(epoch)
        if epoch != self._epoch:
            self._epoch = int(epoch)
            self._batches_done = 0

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "seed", "batches_done"}``: enough to continue this rank's epoch."""
        return {"epoch": self._epoch, "seed": self.seed, "batches_done": self._batches_done}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continues from ``state``: the next iteration starts right after its ``batches_done``.

        The sampler must be built with the same lengths and settings (world size
        included) as the one that saved the state, or the plan differs.
        """
        missing = {"epoch", "seed", "batches_done"} - set(state)
        if missing:
            raise ValueError(f"sampler state lacks {sorted(missing)}")
        epoch, seed, done = int(state["epoch"]), int(state["seed"]), int(state["batches_done"])
        _check_epoch(epoch)
        _check_seed(seed)
        previous_seed, self.seed = self.seed, seed
        total = len(self._plan(epoch)) // self.num_replicas
        if not 0 <= done <= total:
            self.seed = previous_seed
            raise ValueError(
                f"batches_done={done} is outside [0, {total}] for epoch {epoch}: "
                "was the state saved with other lengths or settings?"
            )
        self._epoch, self._batches_done = epoch, done

    # ---- iteration -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[list[int]]:
        """This rank's batches of the current epoch, from where the epoch stands.

        A finished epoch replays from its first batch, as a plain sampler would when
        iterated again without :meth:`set_epoch`.
        """
        epoch = self._epoch
        plan = self._plan(epoch)
        total = len(plan) // self.num_replicas
        start = self._batches_done if self._batches_done < total else 0
        positions = slice(self.rank + start * self.num_replicas, None, self.num_replicas)
        for done, batch in enumerate(plan.batches(positions), start=start + 1):
            # Count before yielding: a state saved while the consumer holds this batch
            # must not hand it out again on resume. A stale iterator left over from an
            # earlier epoch must not move the count of the new one.
            if self._epoch == epoch:
                self._batches_done = done
            yield batch

    def __len__(self) -> int:
        """Number of batches this rank gets over the whole current epoch.

        It does not shrink as batches are yielded or after a resume: it is what a learning
        rate schedule needs. The batches still to come are ``len(self) -
        self.state_dict()["batches_done"]``.
        """
        return len(self._plan(self._epoch)) // self.num_replicas

    # ---- inspecting a plan ---------------------------------------------------------------

    def plan(self, epoch: int) -> list[list[int]]:
        """Every batch of ``epoch`` in order, for all ranks together (rank ``r`` takes ``r::W``)."""
        _check_epoch(epoch)
        return self._plan(epoch).batches()

    def padding_fraction(self, epoch: int | None = None) -> float:
        """Share of the padded batch area that is padding, over the whole plan of ``epoch``.

        That is ``sum(len * max - sum(lengths)) / sum(len * max)`` over all batches of all
        ranks; ``epoch`` defaults to the current one.
        """
        epoch = self._epoch if epoch is None else epoch
        _check_epoch(epoch)
        plan = self._plan(epoch)
        ordered = self.lengths[plan.items]
        longest = np.maximum.reduceat(ordered, plan.offsets[:-1])
        area = int((np.diff(plan.offsets) * longest).sum())
        if area == 0:
            return 0.0
        return (area - int(ordered.sum())) / area

    # ---- planning ------------------------------------------------------------------------

    def _plan(self, epoch: int) -> _Plan:
        """The plan of ``epoch``, cached for the last (seed, epoch) asked for."""
        key = (self.seed, epoch)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._make_plan(epoch))
        return self._cache[1]

    def _make_plan(self, epoch: int) -> _Plan:
        rng = np.random.default_rng((self.seed, epoch))
        n = len(self.lengths)
        items = rng.permutation(n) if self.shuffle else np.arange(n)
        if self.bucket:
            items = items[_sort_within_pools(self.lengths[items], self.pool_size)]
        ends = _greedy_batch_ends(
            self.lengths[items],
            self.max_batch_samples,
            self.max_batch_size or n,
            self.pool_size if self.bucket else None,
            None if self.max_padding is None else int(self.max_padding * self.max_batch_samples),
        )
        offsets = _split_until_divisible(_follow_batches(ends), self.num_replicas, epoch)
        batch_count = len(offsets) - 1
        order = rng.permutation(batch_count) if self.shuffle else np.arange(batch_count)
        return _Plan(items=items, offsets=offsets, order=order)


def _sort_within_pools(lengths: np.ndarray, pool_size: int | None) -> np.ndarray:
    """Stable order sorting ``lengths`` by value within consecutive pools of ``pool_size``."""
    if pool_size is None or pool_size >= len(lengths):
        return np.argsort(lengths, kind="stable")
    pool = np.arange(len(lengths)) // pool_size
    # lexsort is stable and sorts by its last key first: pool, then length.
    return np.lexsort((lengths, pool))


def _greedy_batch_ends(
    lengths: np.ndarray, bound: int, max_size: int, pool_size: int | None, max_pad: int | None = None
) -> np.ndarray:
    """For every start ``i``, the exclusive end of the greedy batch that begins there.

    The greedy batch from ``i`` takes the largest ``k`` with ``k <= max_size``,
    ``i + k <= end of i's pool`` (of ``pool_size`` items; ``None``: one pool of all ``n``),
    ``k * max(lengths[i:i + k]) <= bound`` and, with ``max_pad``, a padding
    ``k * max(lengths[i:i + k]) - sum(lengths[i:i + k]) <= max_pad``, but at least one item (an
    oversize utterance goes alone). Each condition only turns from true to false as ``k``
    grows (adding an item adds ``k * (new max - old max) + new max - its length >= 0`` padding),
    so ``k`` is found for all starts at once by binary lifting: try adding ``2**p``
    items for decreasing ``p``, reading the maximum of the added block from a sparse
    table of range maxima.
    """
    n = len(lengths)
    shortest = max(int(lengths.min()), 1)
    # No batch can hold more than bound // shortest items; capping k keeps the table small.
    cap = max(1, min(max_size, n, pool_size or n, bound // shortest))
    levels = cap.bit_length()
    table = [lengths]  # table[p][j] = max(lengths[j:j + 2**p])
    for p in range(1, levels):
        prev, half = table[-1], 1 << (p - 1)
        table.append(np.maximum(prev[:-half], prev[half:]))

    starts = np.arange(n)
    sums = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])  # sums[j] = lengths[:j].sum()
    limit = n if pool_size is None else np.minimum((starts // pool_size + 1) * pool_size, n)
    taken = np.zeros(n, dtype=np.int64)
    longest = np.zeros(n, dtype=np.int64)
    for p in reversed(range(levels)):
        step, block_max = 1 << p, table[p]
        trial = taken + step
        block_start = starts + taken
        fits = (trial <= cap) & (block_start + step <= limit)
        # Clip so the gather stays in range; out-of-range starts are masked by `fits`.
        added = block_max[np.minimum(block_start, len(block_max) - 1)]
        trial_longest = np.maximum(longest, added)
        fits &= trial * trial_longest <= bound
        if max_pad is not None:
            filled = sums[np.minimum(starts + trial, n)] - sums[starts]  # out of range: masked by `fits`
            fits &= trial * trial_longest - filled <= max_pad
        taken = np.where(fits, trial, taken)
        longest = np.where(fits, trial_longest, longest)
    return starts + np.maximum(taken, 1)


def _follow_batches(ends: np.ndarray) -> np.ndarray:
    """Batch offsets from the first item on: each batch begins where the previous one ended."""
    hop = ends.tolist()
    offsets = [0]
    n = len(hop)
    while offsets[-1] < n:
        offsets.append(hop[offsets[-1]])
    return np.asarray(offsets, dtype=np.int64)


def _split_until_divisible(offsets: np.ndarray, replicas: int, epoch: int) -> np.ndarray:
    """Splits the batches holding the most items in two until the count divides by ``replicas``."""
    count, items = len(offsets) - 1, int(offsets[-1])
    target = -(-count // replicas) * replicas
    if target > items:
        raise ValueError(
            f"epoch {epoch}: {count} batches of {items} utterances cannot be split into a "
            f"multiple of {replicas} batches (nearly every batch holds a single utterance); "
            "raise max_batch_samples or use fewer replicas"
        )
    for _ in range(target - count):
        sizes = np.diff(offsets)
        largest = int(np.argmax(sizes))  # first of the largest: deterministic
        middle = offsets[largest] + sizes[largest] // 2
        offsets = np.insert(offsets, largest + 1, middle)
    return offsets


def _as_lengths(lengths: Sequence[int]) -> np.ndarray:
    array = np.asarray(lengths)
    if array.ndim != 1:
        raise ValueError(f"lengths must be one-dimensional, got shape {array.shape}")
    if len(array) and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"lengths must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if len(array) and int(array.min()) < 0:
        raise ValueError("lengths must not be negative")
    return array


def _check_positive(name: str, value: int | None, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_seed(seed: int) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _check_epoch(epoch: int) -> None:
    if not isinstance(epoch, (int, np.integer)) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
