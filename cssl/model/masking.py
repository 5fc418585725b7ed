"""Span masking, distractor sampling and Gumbel noise for contrastive pretraining (and SpecAugment).

Notation: B batch, T frames, N masked frames in the batch, K distractors per target.

Everything is drawn on the device of its inputs, for the whole batch at once, from the
counter-based generator of :mod:`cssl.kernels.counter_rng` keyed by one seed per utterance
(the caller derives it from the run seed, the update number and the utterance's
manifest index). So the masks, distractors and noise of an utterance do not depend on
the device, nor on which process, batch or accumulation step it lands in: a
multi-process run draws exactly what a single-process run draws.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cssl.kernels.counter_rng import STREAM_CROSS, STREAM_DISTRACTORS, STREAM_GUMBEL, STREAM_SPANS, below, uniform


def batch_span_mask(lengths: Tensor, size: int, prob: float, span: int, min_spans: int, seeds: Tensor,
                    stream: int = STREAM_SPANS) -> Tensor:
    """(B, size) bool mask for rows with ``lengths`` (B,) valid frames; never masks padding.

    As in wav2vec 2.0 (fairseq's ``compute_mask_indices``): ``int(prob * length / span + u)``
    span starts (u uniform in [0, 1), at least ``min_spans``) are drawn without replacement
    from ``[0, length - span]``; overlapping spans merge. Short rows get fewer or shorter
    spans, so at least one frame always stays visible.
    """
    device = lengths.device
    lengths = lengths.to(torch.int64)
    seeds = seeds.to(device=device, dtype=torch.int64)
    if prob <= 0 or size == 0 or lengths.numel() == 0:
        return torch.zeros(lengths.numel(), size, dtype=torch.bool, device=device)
    spans = torch.clamp(lengths - 1, min=1).clamp(max=span)  # (B,): keep at least one frame visible
    u = uniform(seeds, stream, torch.zeros_like(seeds))  # (B,)
    count = torch.floor(prob * lengths / spans + u).to(torch.int64).clamp(min=min_spans)  # (B,)
    room = lengths - spans + 1  # (B,) possible starts
    count = torch.minimum(torch.minimum(count, room), torch.clamp((lengths - 1) // spans, min=1))
    count = torch.where(lengths > 0, count, 0)
    positions = torch.arange(size, device=device)  # (size,)
    keys = uniform(seeds[:, None], stream, positions[None, :] + 1)  # (B, size): a random order of the starts
    keys = torch.where(positions[None, :] < room[:, None], keys, 2.0)  # impossible starts sort last
    rank = keys.argsort(dim=1).argsort(dim=1)  # (B, size): each position's place in the random order
    starts = rank < count[:, None]  # (B, size): the first ``count`` of the order
    covered = starts.cumsum(dim=1)  # (B, size): starts at or before t
    before = positions[None, :] - spans[:, None]  # (B, size): t - span
    earlier = torch.where(before >= 0, covered.gather(1, before.clamp(min=0)), 0)
    return (covered - earlier) > 0  # a start within (t - span, t]


def sample_distractors(mask: Tensor, num: int, cross: int, seeds: Tensor) -> tuple[Tensor, Tensor]:
    """Indices of distractors among the N masked frames (in row-major order of ``mask`` (B, T)).

    Returns ``(index (N, num + cross), usable (N,))`` on ``mask``'s device. For each masked
    frame, ``num`` distractors come uniformly from the other masked frames of the same
    utterance (never itself; repeats allowed, as in wav2vec 2.0) and ``cross`` from the
    other masked frames of the whole batch. Frames of an utterance with a single masked
    frame have no same-utterance distractor and are marked unusable.
    """
    device = mask.device
    counts = mask.sum(dim=1)  # (B,) masked frames per row
    total = int(counts.sum())
    row = torch.repeat_interleave(torch.arange(mask.shape[0], device=device), counts)  # (N,) owner of each frame
    first = (counts.cumsum(0) - counts)[row]  # (N,) global index of the owner's first masked frame
    own = torch.arange(total, device=device) - first  # (N,) position within the owner's masked frames
    n = counts[row]  # (N,)
    seed = seeds.to(device=device, dtype=torch.int64)[row][:, None]  # (N, 1)
    parts = []
    if num > 0:
        k = torch.arange(num, device=device)[None, :]
        # Draw from n - 1 candidates and skip over the frame itself: never the target.
        draw = below(seed, STREAM_DISTRACTORS, own[:, None] * num + k, torch.clamp(n - 1, min=1)[:, None])
        parts.append(torch.where((n >= 2)[:, None], first[:, None] + draw + (draw >= own[:, None]).long(), 0))
    if cross > 0:
        k = torch.arange(cross, device=device)[None, :]
        me = torch.arange(total, device=device)[:, None]
        draw = below(seed, STREAM_CROSS, own[:, None] * cross + k, torch.full_like(me, max(total - 1, 1)))
        parts.append(draw + (draw >= me).long() if total >= 2 else torch.zeros_like(draw))
    index = torch.cat(parts, dim=1) if parts else torch.zeros(total, 0, dtype=torch.long, device=device)
    usable = (n >= 2) | torch.tensor(num == 0 and total >= 2, device=device)
    return index, usable


def gumbel_noise(mask: Tensor, groups: int, entries: int, seeds: Tensor) -> Tensor:
    """(N, G, V) Gumbel(0, 1) noise for the masked frames of ``mask`` (B, T), keyed by utterance and position."""
    device = mask.device
    counts = mask.sum(dim=1)  # (B,)
    row = torch.repeat_interleave(torch.arange(mask.shape[0], device=device), counts)  # (N,)
    own = torch.arange(row.numel(), device=device) - (counts.cumsum(0) - counts)[row]  # (N,)
    width = groups * entries
    counters = own[:, None] * width + torch.arange(width, device=device)[None, :]  # (N, G*V)
    u = uniform(seeds.to(device=device, dtype=torch.int64)[row][:, None], STREAM_GUMBEL, counters)
    return -torch.log(-torch.log(u)).view(-1, groups, entries)  # u in (0, 1): finite
