"""Health checks users ask for during self-supervised training.

* Non-finite losses or gradients: the update is skipped and counted; too many in a row stops
  the run with :class:`NonFiniteLoss` (usually a learning rate too high for the precision).
* Codebook collapse: the quantizer uses fewer than two entries per codebook.
* A contrastive loss stuck at log(K+1) (chance: the context cannot tell targets from
  distractors) or at 0 (the task leaks: targets are trivially identifiable).
Each warning is given once, the first time its condition holds after warmup (for the
chance check, after twice the warmup, on a moving average of the logged loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cssl.utils.errors import UserError


class NonFiniteLoss(UserError, RuntimeError):
    """Too many consecutive updates with a NaN or infinite loss or gradient."""


@dataclass
class Health:
    """Counters and one-time warnings of a training run."""

    max_nonfinite: int = 10
    """Consecutive non-finite updates tolerated before stopping."""
    nonfinite_total: int = 0
    """Updates skipped because of a non-finite loss or gradient norm."""
    nonfinite_streak: int = 0
    """Current run of consecutive non-finite updates."""
    warned: set[str] = field(default_factory=set)
    """Warnings already given."""
    loss_ema: float | None = None
    """Moving average of the logged contrastive loss (single batches are noisy)."""

    def check_loss(self, loss: float, step: int, advice: str = "lower the learning rate", what: str = "loss") -> bool:
        """True when the update may go ahead; False (and counted) when ``loss`` is not finite.

        ``what`` names the figure (``loss``, ``gradient norm``); ``advice`` (from :func:`nonfinite_advice`)
        ends the message when the run is stopped.
        """
        if math.isfinite(loss):
            self.nonfinite_streak = 0
            return True
        self.nonfinite_total += 1
        self.nonfinite_streak += 1
        if self.nonfinite_streak >= self.max_nonfinite:
            raise NonFiniteLoss(
                f"step {step}: {self.nonfinite_streak} updates in a row had a non-finite {what} "
                f"({self.nonfinite_total} in total); {advice}"
            )
        return False

    def check_pretraining(self, step: int, warmup: int, loss: float, num_distractors: int,
                          code_perplexity: float, num_vars: int, groups: int) -> list[str]:
        """Warnings (each once) about codebook collapse and a loss stuck at chance or at zero."""
        self.loss_ema = loss if self.loss_ema is None else 0.8 * self.loss_ema + 0.2 * loss
        if step < warmup:
            return []
        out = []
        if code_perplexity < 2.0 * groups and "collapse" not in self.warned:
            self.warned.add("collapse")
            out.append(f"warning: codebook collapse at step {step}: code perplexity {code_perplexity:.1f} of "
                       f"{num_vars} entries; raise the diversity weight or the Gumbel temperature")
        chance = math.log(num_distractors + 1)
        stuck = step >= 2 * warmup and abs(self.loss_ema - chance) < 0.01 * chance
        if stuck and "chance" not in self.warned:
            self.warned.add("chance")
            out.append(f"warning: contrastive loss {self.loss_ema:.3f} sits at chance log(K+1)={chance:.3f} "
                       f"at step {step}; "
                       "try fewer distractors, a smaller codebook, a higher learning rate or longer warmup")
        if loss < 1e-3 and "zero" not in self.warned:
            self.warned.add("zero")
            out.append(f"warning: contrastive loss {loss:.2e} is near 0 at step {step}: the task may be trivial "
                       "(targets identifiable without context); check masking and the quantizer")
        return out

    def state_dict(self) -> dict[str, object]:
        """Counters, the loss average and the warnings given: a resumed run warns as the uninterrupted one."""
        return {"nonfinite_total": self.nonfinite_total, "nonfinite_streak": self.nonfinite_streak,
                "loss_ema": self.loss_ema, "warned": sorted(self.warned)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.nonfinite_total = int(state["nonfinite_total"])
        self.nonfinite_streak = int(state["nonfinite_streak"])
        ema = state.get("loss_ema")
        self.loss_ema = None if ema is None else float(ema)
        self.warned = set(state.get("warned", ()))


def nonfinite_advice(lr: float, grad_clip: float, precision: str) -> str:
    """What to try after non-finite losses, given the run's actual settings."""
    tips = [f"lower the learning rate (optim.lr, now {lr:g})"]
    if grad_clip <= 0:
        tips.append("enable gradient clipping (optim.grad_clip=10)")
    if precision == "fp16":
        tips.append("use bf16 or fp32 instead of fp16 (mixed_precision=bf16)")
    tips.append("check the data for extreme values (clipping, DC offsets) in the rejects and the batches before the stop")
    return "; ".join(tips)
