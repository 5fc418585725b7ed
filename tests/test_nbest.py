"""N-best model averaging: the mean of state dicts, the ranking of validations, files on disk and resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cssl.train.checkpoint import CheckpointError, load_checkpoint
from cssl.train.nbest import NBest, average_state_dicts


def test_average_is_the_elementwise_mean_and_keeps_integer_buffers_of_the_first() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([1.0], dtype=torch.bfloat16), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, -2.0]), "h": torch.tensor([2.0], dtype=torch.bfloat16), "n": torch.tensor(7)}
    c = {"w": torch.tensor([2.0, 3.0]), "h": torch.tensor([3.0], dtype=torch.bfloat16), "n": torch.tensor(9)}
    out = average_state_dicts([a, b, c])
    assert torch.equal(out["w"], torch.tensor([2.0, 1.0]))
    assert out["h"].dtype == torch.bfloat16 and float(out["h"]) == 2.0
    assert int(out["n"]) == 3
    assert torch.equal(average_state_dicts([a])["w"], a["w"])  # one model: itself
    with pytest.raises(ValueError, match="other keys"):
        average_state_dicts([a, {"w": a["w"]}])


def test_keeps_the_best_by_wer_then_cer_then_later_update_and_deletes_the_rest(tmp_path: Path) -> None:
    nbest = NBest(tmp_path, keep=2)
    offered = [(10, 0.5, 0.3), (20, 0.4, 0.2), (30, 0.4, 0.1), (40, 0.6, 0.1), (50, 0.4, 0.1)]
    kept = [nbest.offer(step, wer, cer, lambda step=step: {"w": torch.full((2,), float(step))})
            for step, wer, cer in offered]
    assert kept == [True, True, True, False, True]
    assert [r.step for r in nbest.ranked] == [50, 30]  # ties on WER and CER: the later update first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_30.pt", "model_50.pt"]
    assert load_checkpoint(tmp_path / "model_50.pt")["step"] == 50
    assert torch.equal(nbest.average()["w"], torch.full((2,), 40.0))


def test_a_process_that_writes_nothing_ranks_alike(tmp_path: Path) -> None:
    writer, other = NBest(tmp_path, keep=2), NBest(tmp_path, keep=2)
    for step, wer in [(1, 0.9), (2, 0.5), (3, 0.7), (4, 0.6)]:
        assert writer.offer(step, wer, 0.0, lambda: {"w": torch.zeros(1)}) == other.offer(step, wer, 0.0, None)
    assert writer.ranked == other.ranked


def test_resume_leaves_out_files_dropped_after_the_checkpoint_and_ranks_as_an_unbroken_run(tmp_path: Path) -> None:
    offered = [(1, 0.9), (2, 0.5), (3, 0.7), (4, 0.4), (5, 0.8)]
    unbroken = NBest(tmp_path / "a", keep=2)
    for step, wer in offered:
        unbroken.offer(step, wer, 0.0, lambda: {"w": torch.zeros(1)})
    killed = NBest(tmp_path / "b", keep=2)
    for step, wer in offered[:3]:
        killed.offer(step, wer, 0.0, lambda: {"w": torch.zeros(1)})
    saved = killed.state_dict()  # the checkpoint after update 3: keeps 2 and 3
    killed.offer(4, 0.4, 0.0, lambda: {"w": torch.zeros(1)})  # then 4 drops 3's file, and the run dies
    resumed = NBest(tmp_path / "b", keep=2)
    resumed.load_state_dict(saved)
    assert [r.step for r in resumed.ranked] == [2]
    for step, wer in offered[3:]:  # updates 4 and 5 again
        resumed.offer(step, wer, 0.0, lambda: {"w": torch.zeros(1)})
    assert resumed.ranked == unbroken.ranked
    resumed.path(4).unlink()
    with pytest.raises(CheckpointError, match="model_4.pt"):
        resumed.average()
