"""Fits a temperature for a fine-tuned model's output probabilities and stores it in the checkpoint
(``cssl calibrate CKPT DEV [--eval TEST]``, and the end of every fine-tuning run).

The temperature minimises, on dev, either the negative log-likelihood of word
correctness under the word confidences (``--objective word``, the default: it calibrates
the confidences that decoding reports) or the CTC negative log-likelihood of the
transcripts (``--objective ctc``: frame-level probabilities). Greedy words do not depend
on the temperature, only their confidences do. The checkpoint is rewritten atomically
with ``temperature`` set; inference divides logits by it. With ``--eval``, word
confidences on that set (default: the dev set) are compared with word correctness from
the WER alignment before and after: expected calibration error, NLL per utterance, and
a reliability diagram (PNG beside the checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from cssl.convert import read_checkpoint
from cssl.convert.loading import load_model
from cssl.data.dataset import DataConfig, build_loader
from cssl.model.ctc import ctc_loss
from cssl.score.calibration import expected_calibration_error, fit_temperature, word_confidences
from cssl.score.evaluation import word_correctness
from cssl.text.vocab import Vocabulary
from cssl.train.checkpoint import CheckpointError, save_checkpoint
from cssl.utils.errors import UsageError


@dataclass
class Outputs:
    """Logits of a set, kept on the CPU for repeated scoring at several temperatures."""

    logits: list[torch.Tensor]
    """Per utterance (T, V)."""
    targets: list[torch.Tensor]
    """Per utterance (L,) character ids."""
    references: list[str]
    """Normalised reference transcripts."""


@torch.no_grad()
def collect(ckpt: dict, manifest: str | Path, device: torch.device | str = "cpu") -> Outputs:
    """Runs the checkpoint's model over a labeled manifest (on ``device``; outputs on the CPU)."""
    loaded = load_model(ckpt)
    vocab, model = loaded.vocab, loaded.model.to(device).eval()
    data = DataConfig(crop_samples=None, min_samples=0, max_batch_samples=ckpt["config"]["data"].get("max_batch_samples", 1_600_000),
                      num_workers=0, normalize=loaded.normalize)
    loader = build_loader(data, manifest, vocab, train=False, filter_lengths=False)
    out = Outputs([], [], [])
    for batch in loader:
        if not len(batch):
            continue
        logits, frames = model(batch.waves.to(device), batch.lengths.to(device))
        logits, frames = logits.float().cpu(), frames.cpu()
        for row in range(len(batch.indices)):
            out.logits.append(logits[row, : frames[row]])
            out.targets.append(batch.targets[row, : batch.target_lengths[row]])
            out.references.append(vocab.decode(out.targets[-1].tolist()))
    return out


def nll(outputs: Outputs, tau: float) -> float:
    """Mean CTC negative log-likelihood per utterance at temperature ``tau``."""
    total, count = 0.0, 0
    for logits, target in zip(outputs.logits, outputs.targets):
        res = ctc_loss((logits / tau)[None], torch.tensor([len(logits)]), target[None], torch.tensor([len(target)]))
        total += float(res.loss)
        count += res.count
    return total / max(count, 1)


def confidences(outputs: Outputs, vocab: Vocabulary, tau: float) -> tuple[list[float], list[bool]]:
    """Word confidences of the greedy hypotheses and whether each word is correct (WER alignment)."""
    confs, correct = [], []
    for logits, ref in zip(outputs.logits, outputs.references):
        words = word_confidences((logits / tau).log_softmax(-1), vocab.symbols, vocab.blank)
        if not words:
            continue
        confs += [w.confidence for w in words]
        correct += word_correctness(ref, " ".join(w.word for w in words))
    return confs, correct


def binary_nll(confs: list[float], correct: list[bool]) -> float:
    """Mean binary negative log-likelihood of word correctness under word confidences."""
    if not confs:
        return 0.0
    p = torch.tensor(confs, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    return float(torch.nn.functional.binary_cross_entropy(p, torch.tensor(correct, dtype=torch.float64)))


def word_nll(outputs: Outputs, vocab: Vocabulary, tau: float) -> float:
    """:func:`binary_nll` of the greedy words at temperature ``tau``."""
    return binary_nll(*confidences(outputs, vocab, tau))


def word_nll_fn(outputs: Outputs, vocab: Vocabulary) -> Callable[[float], float]:
    """:func:`word_nll` as a function of the temperature, aligning the words once: greedy
    words, hence their correctness, do not depend on the temperature."""
    _, correct = confidences(outputs, vocab, 1.0)

    def at(tau: float) -> float:
        confs = [w.confidence for logits in outputs.logits
                 for w in word_confidences((logits / tau).log_softmax(-1), vocab.symbols, vocab.blank)]
        return binary_nll(confs, correct)

    return at


OBJECTIVES = ("word", "ctc")
"""What the temperature minimises on dev: word-confidence NLL or CTC NLL."""
TEMPERATURE_RANGE = (0.25, 8.0)
"""Where the temperature is searched; a fit at either end is a bound, not a minimum."""
MIN_DIAGRAM_WORDS = 100
"""Fewer words than this make a reliability diagram mostly noise (10 bins)."""


def calibration_warnings(figures: dict[str, float]) -> list[str]:
    """Warnings about a fit that hit the search range's end or rests on too few words."""
    out = []
    tau, (low, high) = figures["temperature"], TEMPERATURE_RANGE
    if tau >= high * 0.99 or tau <= low * 1.01:
        out.append(f"the fitted temperature {tau:.3f} sits at the end of the search range [{low:g}, {high:g}]: "
                   "the dev set's confidences cannot be calibrated this way (too few words, or a model that "
                   "emits almost nothing); treat the temperature as a bound, not a fit")
    if figures["words"] < MIN_DIAGRAM_WORDS:
        out.append(f"only {int(figures['words'])} decoded words: too few for a reliable ECE or reliability "
                   f"diagram (at least {MIN_DIAGRAM_WORDS} are needed)")
    return out


def reliability_diagram(before: tuple[list[float], list[bool]], after: tuple[list[float], list[bool]],
                        taus: tuple[float, float], png: Path, bins: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, (conf, ok), tau, title in zip(axes, (before, after), taus, ("before", "after")):
        c, k = torch.tensor(conf), torch.tensor(ok, dtype=torch.float64)
        index = (c * bins).long().clamp(max=bins - 1)
        centers, accs, counts = [], [], []
        for b in range(bins):
            sel = index == b
            if sel.any():
                centers.append((b + 0.5) / bins)
                accs.append(float(k[sel].mean()))
                counts.append(int(sel.sum()))
        ax.bar(centers, accs, width=1 / bins, edgecolor="black", alpha=0.7, label="word accuracy")
        ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
        ece = expected_calibration_error(conf, ok, bins)
        few = f"\nonly {len(conf)} words: too few to judge" if len(conf) < MIN_DIAGRAM_WORDS else f", {len(conf)} words"
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="word confidence", ylabel="accuracy",
               title=f"{title} calibration (T={tau:.2f}): ECE {ece:.3f}{few}")
        ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def calibrate(checkpoint: Path, dev: str | Path, eval_manifest: str | Path | None = None,
              device: torch.device | str = "cpu", objective: str = "word") -> dict[str, float | str]:
    """Fits, stores (:func:`store_temperature`) and reports the temperature; returns the figures
    (floats) and ``stored_in``, the file that now holds the temperature.

    ``checkpoint`` is any fine-tuned model :func:`cssl.convert.read_checkpoint` reads (a
    transformers ``Wav2Vec2ForCTC`` folder, a fairseq CTC checkpoint...)."""
    if objective not in OBJECTIVES:
        raise UsageError(f"calibration objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
    checkpoint = Path(checkpoint)
    ckpt = read_checkpoint(checkpoint)
    if ckpt.get("kind") != "finetune":
        raise CheckpointError(f"{checkpoint}: not a fine-tuned (CTC) model; calibrate the best.pt of a fine-tuning run")
    vocab = Vocabulary(tuple(ckpt["vocab"]["symbols"]))
    dev_out = collect(ckpt, dev, device)
    tau = fit_temperature(word_nll_fn(dev_out, vocab) if objective == "word" else lambda t: nll(dev_out, t),
                          *TEMPERATURE_RANGE)
    ckpt["temperature"] = tau
    stored = store_temperature(checkpoint, ckpt, tau)
    test_out = collect(ckpt, eval_manifest, device) if eval_manifest else dev_out
    before, after = confidences(test_out, vocab, 1.0), confidences(test_out, vocab, tau)
    png = checkpoint / "reliability.png" if checkpoint.is_dir() else checkpoint.with_name(checkpoint.stem + "_reliability.png")
    reliability_diagram(before, after, (1.0, tau), png)
    return {
        "temperature": tau,
        "nll_before": nll(test_out, 1.0),
        "nll_after": nll(test_out, tau),
        "word_nll_before": binary_nll(*before),
        "word_nll_after": binary_nll(*after),
        "ece_before": expected_calibration_error(*before),
        "ece_after": expected_calibration_error(*after),
        "words": float(len(before[0])),
        "stored_in": str(stored),
    }


def store_temperature(checkpoint: Path, ckpt: dict, tau: float) -> Path:
    """Keeps ``tau`` with the model: in a cssl checkpoint itself, in a transformers folder's
    ``config.json`` (``cssl_temperature``, which transformers ignores), otherwise (a fairseq or
    torchaudio file, which cssl does not rewrite) in a cssl checkpoint ``NAME.calibrated.pt``
    beside it. Returns where."""
    if checkpoint.is_dir():
        import json

        from cssl.utils.io import atomic_write_json

        config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
        config["cssl_temperature"] = tau
        atomic_write_json(checkpoint / "config.json", config)
        return checkpoint / "config.json"
    target = checkpoint if "imported_from" not in ckpt else checkpoint.with_name(checkpoint.stem + ".calibrated.pt")
    save_checkpoint(target, ckpt)
    return target
