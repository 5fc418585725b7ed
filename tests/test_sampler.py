"""Tests for the length-bucketed batch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from cssl.data.sampler import BucketBatchSampler

BOUND = 4_000


def lognormal_lengths(n: int, seed: int = 0, cap: int = 2_000) -> list[int]:
    """Speech-like lengths: lognormal, capped at a crop size like the caller's."""
    rng = np.random.default_rng(seed)
    lengths = rng.lognormal(mean=np.log(600), sigma=0.7, size=n).astype(int) + 1
    return np.minimum(lengths, cap).tolist()


def naive_greedy(lengths: list[int], order: list[int], bound: int, max_size: int,
                 max_pad: int | None = None) -> list[list[int]]:
    """Reference packing, one item at a time (``max_pad``: also close before the padding passes it)."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        grown = max(longest, lengths[index])
        padding = (len(current) + 1) * grown - sum(lengths[i] for i in current) - lengths[index]
        if current and ((len(current) + 1) * grown > bound or len(current) == max_size
                        or (max_pad is not None and padding > max_pad)):
            batches.append(current)
            current, grown = [], lengths[index]
        current.append(index)
        longest = grown
    batches.append(current)
    return batches


def assert_within_bound(batches: list[list[int]], lengths: list[int], bound: int) -> None:
    for batch in batches:
        assert batch, "empty batch"
        longest = max(lengths[i] for i in batch)
        assert len(batch) * longest <= bound or len(batch) == 1


def test_bound_respected_and_every_index_once() -> None:
    lengths = lognormal_lengths(1_001)
    sampler = BucketBatchSampler(lengths, BOUND, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert_within_bound(batches, lengths, BOUND)
        assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))


@pytest.mark.parametrize("bucket", [True, False])
@pytest.mark.parametrize("max_batch_size", [None, 3])
def test_packing_matches_a_one_item_at_a_time_greedy(bucket: bool, max_batch_size: int | None) -> None:
    lengths = lognormal_lengths(500, seed=1)
    sampler = BucketBatchSampler(lengths, BOUND, max_batch_size, bucket=bucket, shuffle=False)
    order = sorted(range(len(lengths)), key=lengths.__getitem__) if bucket else range(len(lengths))
    expected = naive_greedy(lengths, list(order), BOUND, max_batch_size or len(lengths))
    assert sampler.plan(0) == expected


@pytest.mark.parametrize("bucket", [True, False])
@pytest.mark.parametrize("max_padding", [0.0, 0.02, 0.1])
def test_a_padding_cap_closes_batches_as_the_one_item_at_a_time_greedy_does(bucket: bool, max_padding: float) -> None:
    lengths = lognormal_lengths(500, seed=4)
    sampler = BucketBatchSampler(lengths, BOUND, bucket=bucket, shuffle=False, max_padding=max_padding)
    order = sorted(range(len(lengths)), key=lengths.__getitem__) if bucket else range(len(lengths))
    expected = naive_greedy(lengths, list(order), BOUND, len(lengths), int(max_padding * BOUND))
    assert sampler.plan(0) == expected
    for batch in sampler.plan(0):
        assert len(batch) * max(lengths[i] for i in batch) - sum(lengths[i] for i in batch) <= max_padding * BOUND


def test_a_padding_cap_lowers_the_padding_of_few_long_batches() -> None:
    """A small, widely spread set in a large bound: the greedy batches reach far up the sorted lengths."""
    lengths = lognormal_lengths(200, seed=5, cap=10_000)
    plain = BucketBatchSampler(lengths, 60_000, seed=1)
    capped = BucketBatchSampler(lengths, 60_000, seed=1, max_padding=0.05)
    assert capped.padding_fraction(0) < 0.6 * plain.padding_fraction(0)
    assert sorted(i for b in capped.plan(0) for i in b) == list(range(200))
    with pytest.raises(ValueError, match="max_padding"):
        BucketBatchSampler(lengths, 60_000, max_padding=1.5)


def test_pools_are_sorted_and_packed_each_on_its_own() -> None:
    lengths = lognormal_lengths(230, seed=2)
    sampler = BucketBatchSampler(lengths, BOUND, shuffle=False, pool_size=50)
    expected = []
    for start in range(0, len(lengths), 50):
        pool = sorted(range(start, min(start + 50, len(lengths))), key=lengths.__getitem__)
        expected += naive_greedy(lengths, pool, BOUND, len(lengths))
    assert sampler.plan(0) == expected


def test_same_seed_and_epoch_give_the_same_plan_and_others_differ() -> None:
    lengths = lognormal_lengths(400)
    first = BucketBatchSampler(lengths, BOUND, seed=7)
    second = BucketBatchSampler(lengths, BOUND, seed=7)
    assert first.plan(0) == second.plan(0)
    assert first.plan(5) == second.plan(5)
    assert first.plan(0) != first.plan(1)
    assert first.plan(0) != BucketBatchSampler(lengths, BOUND, seed=8).plan(0)
    first.set_epoch(5)
    assert list(first) == second.plan(5)


@pytest.mark.parametrize("replicas", [2, 3, 4])
@pytest.mark.parametrize("n", [7, 101, 999])
@pytest.mark.parametrize("pool_size", [None, 50])
def test_shards_are_equal_disjoint_and_complete(replicas: int, n: int, pool_size: int | None) -> None:
    lengths = lognormal_lengths(n, seed=n)
    for epoch in (0, 1):
        shards = []
        for rank in range(replicas):
            sampler = BucketBatchSampler(
                lengths, BOUND, seed=11, num_replicas=replicas, rank=rank, pool_size=pool_size
            )
            sampler.set_epoch(epoch)
            shard = list(sampler)
            assert len(shard) == len(sampler)
            assert shard == sampler.plan(epoch)[rank::replicas]
            assert_within_bound(shard, lengths, BOUND)
            shards.append(shard)
        assert len({len(shard) for shard in shards}) == 1
        indices = [i for shard in shards for batch in shard for i in batch]
        assert sorted(indices) == list(range(n))


def test_one_batch_is_split_so_every_replica_gets_one() -> None:
    # All seven fit one batch; four replicas need four batches, made by splitting.
    lengths = [10] * 7
    plans = [
        BucketBatchSampler(lengths, 1_000, num_replicas=4, rank=rank, shuffle=False) for rank in range(4)
    ]
    assert sorted(len(batch) for batch in plans[0].plan(0)) == [1, 2, 2, 2]
    assert [len(sampler) for sampler in plans] == [1, 1, 1, 1]
    assert sorted(i for sampler in plans for batch in sampler for i in batch) == list(range(7))


def test_fewer_items_than_replicas_or_unsplittable_plans_raise() -> None:
    with pytest.raises(ValueError, match="replicas"):
        BucketBatchSampler([100, 200], BOUND, num_replicas=3)
    with pytest.raises(ValueError, match="replicas"):
        BucketBatchSampler([], BOUND)
    # Every utterance is over the bound, so each is alone: 5 batches cannot become 6.
    with pytest.raises(ValueError, match="cannot be split"):
        BucketBatchSampler([10] * 5, 5, num_replicas=2)


@pytest.mark.parametrize("replicas", [1, 3])
def test_resume_mid_epoch_yields_exactly_the_rest(replicas: int) -> None:
    lengths = lognormal_lengths(600)
    settings = dict(seed=5, num_replicas=replicas, rank=replicas - 1)
    uninterrupted = BucketBatchSampler(lengths, BOUND, **settings)
    uninterrupted.set_epoch(2)
    epoch_two = list(uninterrupted)
    uninterrupted.set_epoch(3)
    epoch_three = list(uninterrupted)

    interrupted = BucketBatchSampler(lengths, BOUND, **settings)
    interrupted.set_epoch(2)
    k = 4
    seen = []
    for batch in interrupted:
        seen.append(batch)
        if len(seen) == k:
            break
    state = interrupted.state_dict()
    assert state == {"epoch": 2, "seed": 5, "batches_done": k}

    resumed = BucketBatchSampler(lengths, BOUND, **{**settings, "seed": 0})
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # a training loop re-entering the epoch must keep the position
    assert len(resumed) == len(epoch_two)
    assert seen + list(resumed) == epoch_two
    assert resumed.state_dict()["batches_done"] == len(epoch_two)
    resumed.set_epoch(3)
    assert list(resumed) == epoch_three


def test_bad_state_is_refused() -> None:
    sampler = BucketBatchSampler(lognormal_lengths(50), BOUND)
    with pytest.raises(ValueError, match="lacks"):
        sampler.load_state_dict({"epoch": 0})
    with pytest.raises(ValueError, match="batches_done"):
        sampler.load_state_dict({"epoch": 0, "seed": 0, "batches_done": 10_000})


def test_finished_epoch_replays_when_iterated_again() -> None:
    sampler = BucketBatchSampler(lognormal_lengths(200), BOUND)
    assert list(sampler) == list(sampler)


def test_padding_fraction_by_hand() -> None:
    # Sorted lengths 1, 2, 3, 4, 10 under a bound of 8 pack as [1, 2] (2 * 2 = 4; adding
    # 3 would make 3 * 3 = 9), [3, 4] (2 * 4 = 8) and [10] alone (over the bound).
    # Area 2*2 + 2*4 + 1*10 = 22, lengths sum to 20: 2 padded samples of 22.
    lengths = [4, 10, 1, 3, 2]
    sampler = BucketBatchSampler(lengths, 8, shuffle=False)
    assert sampler.plan(0) == [[2, 4], [3, 0], [1]]
    assert sampler.padding_fraction() == pytest.approx(2 / 22)


def test_bucketing_pads_far_less_than_plain_batches() -> None:
    lengths = lognormal_lengths(5_000, cap=10_000)
    bucketed = BucketBatchSampler(lengths, 20_000)
    pooled = BucketBatchSampler(lengths, 20_000, pool_size=1_000)
    plain = BucketBatchSampler(lengths, 20_000, bucket=False)
    assert bucketed.padding_fraction() < 0.10
    assert pooled.padding_fraction() < 0.10
    assert plain.padding_fraction() > 0.3
    assert bucketed.plan(0) != pooled.plan(0)


def test_oversize_utterance_forms_a_batch_alone() -> None:
    lengths = [100] * 30 + [5_000]
    for epoch in range(3):
        batches = BucketBatchSampler(lengths, 1_000, seed=epoch).plan(epoch)
        assert [30] in batches
        assert all(len(batch) <= 10 for batch in batches)


def test_max_batch_size_respected() -> None:
    lengths = lognormal_lengths(300)
    sampler = BucketBatchSampler(lengths, 1_000_000, max_batch_size=8)
    batches = sampler.plan(0)
    assert max(len(batch) for batch in batches) == 8
    assert sum(len(batch) for batch in batches) == 300


def test_invalid_settings_raise() -> None:
    with pytest.raises(ValueError, match="max_batch_samples"):
        BucketBatchSampler([1, 2], 0)
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler([1, 2], 10, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="negative"):
        BucketBatchSampler([1, -2], 10)
    with pytest.raises(ValueError, match="epoch"):
        BucketBatchSampler([1, 2], 10).set_epoch(-1)


class ToyUtterances(Dataset):
    """Utterance ``i`` is ``lengths[i]`` samples, all equal to ``i``."""

    def __init__(self, lengths: list[int]) -> None:
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.full((self.lengths[index],), float(index))


def pad_collate(batch: list[torch.Tensor]) -> torch.Tensor:
    return torch.nn.utils.rnn.pad_sequence(batch, batch_first=True)


def test_works_as_a_dataloader_batch_sampler() -> None:
    lengths = lognormal_lengths(120, cap=500)
    sampler = BucketBatchSampler(lengths, 2_000, seed=2)
    loader = DataLoader(ToyUtterances(lengths), batch_sampler=sampler, collate_fn=pad_collate)
    sampler.set_epoch(1)
    seen = []
    for padded in loader:
        assert padded.numel() <= 2_000
        seen.extend(int(row.max()) for row in padded)
    assert len(loader) == len(sampler)
    assert sorted(seen) == list(range(120))
