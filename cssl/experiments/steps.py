"""Steps the demo and the benchmarks compose: synthesize a corpus, run a stage preset, build the
corpus LM, score a checkpoint greedily and with an LM whose weights were chosen on dev.

The training stages run as their own processes (``python -m pretrain``, ``python -m
finetune``), exactly as a user runs them: the library drives them through their command
lines and does not import them. Their progress goes straight to the console.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from cssl import PRETRAINED  # noqa: F401 - the demo's and the benchmarks' default start
from cssl.decode.lm_tuning import LMTuning
from cssl.score.evaluation import Evaluation
from cssl.utils.config import preset
from cssl.utils.errors import UserError
from cssl.utils.io import hold_lock

PRETRAIN_PRESET = preset("pretrain/tiny.yaml")
"""The pretraining preset the demo runs live."""
FINETUNE_PRESET = preset("finetune/tiny.yaml")
"""The fine-tuning preset of the demo and the label-budget benchmark."""


class StageFailed(UserError):
    """A stage run by :func:`run_stage` exited with an error (its message is above, on stderr)."""


def run_stage(stage: str, config: Path, overrides: list[str]) -> None:
    """Runs ``python -m STAGE CONFIG OVERRIDES...`` in a new process; raises :class:`StageFailed` on failure."""
    command = [sys.executable, "-m", stage, str(config), *overrides]
    status = subprocess.run(command).returncode
    if status:
        raise StageFailed(f"{' '.join(command)} exited with status {status} (its error is printed above)")


def interrupted(out: Path) -> bool:
    """Whether ``out`` holds checkpoints of a run that has not finished (or was never scored)."""
    return any(out.glob("*.pt"))


def fresh_folder(out: Path, keep_checkpoints: bool = False) -> bool:
    """Empties ``out`` for a new run, after taking the lock beside it (``.NAME.lock``): two benchmarks started
    on the same run never delete each other's files; the second stops and names the first.

    With ``keep_checkpoints`` a folder holding checkpoints of an interrupted run is kept; returns whether it was
    (the caller resumes it)."""
    hold_lock(out.parent / f".{out.name}.lock", f"run folder {out}")
    if keep_checkpoints and interrupted(out):
        return True
    if out.exists():
        shutil.rmtree(out)
    return False


def pretrain(corpus: Path, out: Path, minutes: float, steps: int) -> Path:
    """Pretrains the tiny preset on ``corpus``'s unlabeled split (dev for validation); returns ``last.pt``."""
    fresh_folder(out)  # a new run pretrains afresh; only the corpus is cached
    run_stage("pretrain", PRETRAIN_PRESET, [
        f"data.manifest={corpus / 'unlabeled.tsv'}",
        f"data.valid_manifest={corpus / 'dev.tsv'}",
        f"out_dir={out}",
        f"max_minutes={minutes}",
        f"optim.max_steps={steps}",
    ])
    return out / "last.pt"


def finetune(name: str, train: Path, dev: Path, out: Path, steps: int, pretrained: Path,
             extra: list[str] | None = None, config: Path = FINETUNE_PRESET, resume: bool = False) -> Path:
    """Fine-tunes ``config`` (the tiny preset) as ``name`` (pretrained, scratch, scratch-frozen) on
    ``train``; returns its best checkpoint by ``dev`` WER (``averaged.pt`` when ``average_best`` made
    one that won on dev; not calibrated: callers calibrate and report). ``extra`` overrides come last
    (a seed, early stopping). With ``resume`` an interrupted run in ``out`` continues from its newest
    checkpoint (exactly, as ``resume=auto`` does) instead of starting afresh."""
    resuming = fresh_folder(out, keep_checkpoints=resume)
    run_stage("finetune", config, [
        f"data.manifest={train}",
        f"data.valid_manifest={dev}",
        f"out_dir={out}",
        f"optim.max_steps={steps}",
        "calibrate=false",
        f"init={pretrained}" if name == "pretrained" else "init=null",
        f"freeze.feature_encoder={'false' if name == 'scratch' else 'true'}",
        *(["resume=auto"] if resuming else []),
        *(extra or []),
    ])
    return best_checkpoint(out)


def best_checkpoint(out: Path) -> Path:
    """A fine-tuning run's model of the best dev validation: ``averaged.pt`` when ``average_best`` made one
    that won on dev, else ``best.pt``."""
    averaged = out / "averaged.pt"
    return averaged if averaged.is_file() else out / "best.pt"


def synthesize(out: Path, hours: float, seed: int):
    from cssl.synth.corpus import synthesize_corpus

    summary = synthesize_corpus(out, hours=hours, seed=seed, vocab_size=300)
    print(summary.table())
    return summary


def build_lm(corpus: Path, path: Path) -> Path:
    """A 3-gram LM from the transcripts of the corpus's labeled training text (no test sentences).

    The unlabeled split has no transcripts: its entries count as empty sentences."""
    from cssl.data.manifest import read_manifest
    from cssl.decode.lm import build_ngram, write_arpa

    sentences = [e.text or "" for split in ("unlabeled", "train") for e in read_manifest(corpus / f"{split}.tsv")]
    write_arpa(build_ngram(sentences, order=3), path)
    return path


def score(best: Path, dev: Path, test: Path, lm: Path, prefix: Path, name: str
          ) -> tuple[Evaluation, Evaluation, LMTuning]:
    """Scores a checkpoint on the ``test`` manifest greedily, and with beam search and the LM whose weight
    and word score were chosen on the ``dev`` manifest; writes ``{prefix}_greedy.jsonl``, ``{prefix}_lm.jsonl`` and the dev grid,
    ``{prefix}_lm_grid.md``."""
    from cssl.decode.lm_tuning import tune_lm
    from cssl.decode.recognizer import Recognizer
    from cssl.score.evaluation import evaluate_manifest

    greedy = Recognizer.from_checkpoint(best)
    tuning = tune_lm(greedy, dev, lm)
    Path(f"{prefix}_lm_grid.md").write_text(f"Dev WER by LM weight and word score ({name}):\n\n{tuning.table()}\n")
    edges = "".join(f"; at the grid's {edge}" for edge in tuning.edges())
    print(f"{name:>15} LM weight {tuning.lm_weight:g}, word score {tuning.word_score:g} chosen on dev "
          f"(dev WER {tuning.wer:.3f}{edges})", flush=True)
    beam = Recognizer(greedy.model, greedy.vocab, greedy.temperature, greedy.normalize, lm=str(lm),
                      lm_weight=tuning.lm_weight, word_score=tuning.word_score)
    results = []
    for decoder, rec in (("greedy", greedy), ("lm", beam)):
        r = evaluate_manifest(rec, test, Path(f"{prefix}_{decoder}.jsonl"))
        print(f"{name:>15} {decoder:>6}: WER {r.wer:.3f} CER {r.cer:.3f} RTF {r.rtf:.4f} "
              f"({r.utterances} utterances)", flush=True)
        results.append(r)
    return results[0], results[1], tuning
