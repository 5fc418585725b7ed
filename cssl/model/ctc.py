"""CTC head objective and greedy decoding (pure functions).

Notation: B batch, T frames, V vocabulary (index 0 is the blank), L target length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class CTCLossOutput:
    """CTC loss summed over utterances that fit, and those that do not."""

    loss: Tensor
    """Sum of per-utterance negative log-likelihoods (fp32), infeasible ones excluded."""
    count: int
    """Utterances that contributed (normalise ``loss`` by this)."""
    infeasible: Tensor
    """(B,) True where the target needs more frames than the audio has."""


def min_frames(targets: Tensor, target_lengths: Tensor) -> Tensor:
    """(B,) frames CTC needs: one per label plus one blank between each repeated pair."""
    repeats = torch.zeros_like(target_lengths)
    if targets.shape[1] > 1:
        same = (targets[:, 1:] == targets[:, :-1]) & (targets[:, 1:] >= 0)  # (B, L-1)
        valid = torch.arange(1, targets.shape[1], device=targets.device)[None, :] < target_lengths[:, None]
        repeats = (same & valid).sum(dim=1)
    return target_lengths + repeats


def ctc_loss(logits: Tensor, frame_lengths: Tensor, targets: Tensor, target_lengths: Tensor,
             blank: int = 0) -> CTCLossOutput:
    """CTC in fp32 over (B, T, V) logits; utterances too long for their audio are reported, not NaN.

    Targets are (B, L) padded with -1. Infeasible utterances (``min_frames > frames``) are
    masked out of the sum rather than clamped to zero, so the caller can count them.
    """
    log_probs = logits.float().log_softmax(dim=-1).transpose(0, 1)  # (T, B, V)
    infeasible = min_frames(targets, target_lengths) > frame_lengths
    per_utt = F.ctc_loss(log_probs, targets.clamp(min=0), frame_lengths, target_lengths, blank=blank,
                         reduction="none", zero_infinity=True)  # (B,)
    keep = ~infeasible
    return CTCLossOutput(per_utt[keep].sum(), int(keep.sum()), infeasible)


def sequence_log_likelihood(log_probs: Tensor, target: list[int], blank: int = 0) -> float:
    """log P(target | x) under CTC: every frame path that collapses to ``target`` (ids, no blanks) summed,
    from one utterance's (T, V) log-probabilities; -inf when the audio has too few frames for it."""
    lp = log_probs.float()[:, None, :]  # (T, V) -> (T, 1, V)
    targets = torch.tensor([target], dtype=torch.long)  # (1, L)
    nll = F.ctc_loss(lp, targets, torch.tensor([lp.shape[0]]), torch.tensor([len(target)]), blank=blank,
                     reduction="none", zero_infinity=False)  # (1,)
    return -float(nll[0])


def greedy_decode(logits: Tensor, frame_lengths: Tensor, blank: int = 0) -> list[list[int]]:
    """Best path: argmax per frame, repeats merged, blanks dropped; one id list per utterance."""
    best = logits.argmax(dim=-1)  # (B, T)
    out = []
    for row, n in zip(best, frame_lengths.tolist()):
        ids = torch.unique_consecutive(row[:n])
        out.append([int(i) for i in ids if i != blank])
    return out
