"""Span masking and distractor sampling for contrastive pretraining.

Notation: B batch, T frames, N masked frames in the batch, K distractors per target.

Randomness comes from one ``torch.Generator`` per utterance (seeded by the caller from
the run seed, the update number and the utterance's manifest index), so the masks and
distractors of an utterance do not depend on which process, batch or accumulation
step it lands in: a multi-process run draws exactly what a single-process run draws.
"""

from __future__ import annotations

import torch
from torch import Tensor


def span_mask(length: int, size: int, prob: float, span: int, min_spans: int, gen: torch.Generator) -> Tensor:
    """(size,) bool mask of one utterance with ``length`` valid frames; never masks padding.

    As in wav2vec 2.0: ``int(prob * length / span + u)`` span starts (u uniform in [0, 1),
    at least ``min_spans``) are drawn without replacement from ``[0, length - span]``;
    overlapping spans merge. Short utterances get fewer or shorter spans, so at least
    one frame always stays visible.
    """
    mask = torch.zeros(size, dtype=torch.bool)
    if length <= 0 or prob <= 0:
        return mask
    span = min(span, max(1, length - 1))  # keep at least one frame visible
    count = int(prob * length / span + float(torch.rand((), generator=gen)))
    count = max(min_spans, count)
    room = length - span + 1
    count = min(count, room, max(1, (length - 1) // span))  # spans never cover the whole utterance
    starts = torch.randperm(room, generator=gen)[:count]  # (count,)
    frames = (starts[:, None] + torch.arange(span)[None, :]).flatten()  # (count * span,)
    mask[frames] = True
    return mask


def batch_span_mask(lengths: Tensor, size: int, prob: float, span: int, min_spans: int,
                    gens: list[torch.Generator]) -> Tensor:
    """(B, size) bool mask, one :func:`span_mask` per row."""
    rows = [span_mask(int(n), size, prob, span, min_spans, g) for n, g in zip(lengths.tolist(), gens)]
    return torch.stack(rows) if rows else torch.zeros(0, size, dtype=torch.bool)


def sample_distractors(mask: Tensor, num: int, cross: int, gens: list[torch.Generator]) -> tuple[Tensor, Tensor]:
    """Indices of distractors among the N masked frames (in row-major order of ``mask``).

    Returns ``(index (N, num + cross), usable (N,))``. For each masked frame, ``num``
    distractors come uniformly from the other masked frames of the same utterance
    (never itself; repeats allowed, as in wav2vec 2.0) and ``cross`` from the other
    masked frames of the whole batch. Frames of an utterance with a single masked
    frame have no same-utterance distractor and are marked unusable.
    """
    counts = mask.sum(dim=1).tolist()  # masked frames per row
    total = sum(counts)
    index = torch.zeros(total, num + cross, dtype=torch.long)
    usable = torch.zeros(total, dtype=torch.bool)
    start = 0
    for n, gen in zip(counts, gens):
        if n >= 2 and num > 0:
            # Draw from n - 1 candidates and skip over the frame itself: never the target.
            draw = torch.randint(0, n - 1, (n, num), generator=gen)  # (n, num)
            own = torch.arange(n)[:, None]
            index[start : start + n, :num] = start + draw + (draw >= own).long()
        if cross > 0 and total >= 2:
            draw = torch.randint(0, total - 1, (n, cross), generator=gen)  # (n, cross)
            own = torch.arange(start, start + n)[:, None]
            index[start : start + n, num:] = draw + (draw >= own).long()
        usable[start : start + n] = n >= 2 or (num == 0 and total >= 2)
        start += n
    return index, usable


def generators(seeds: Tensor | list[int]) -> list[torch.Generator]:
    """One CPU generator per seed."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds]
