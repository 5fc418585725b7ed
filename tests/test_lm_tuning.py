from __future__ import annotations

import pytest

from cssl.decode.lm_tuning import GridPoint, LMTuning


def _tuning(wer: dict[tuple[float, float], float]) -> LMTuning:
    grid = [GridPoint(w, s, wer[w, s], 0.5) for (w, s) in wer]
    return LMTuning(min(grid, key=lambda p: (p.wer, p.cer)), 10, 0, grid)


@pytest.mark.parametrize(("best", "expected"), [
    ((2.0, 0.0), []),  # inside the grid on both axes
    ((4.0, 0.0), ["largest LM weight 4"]),
    ((0.5, -1.0), ["smallest LM weight 0.5", "smallest word score -1"]),
    ((2.0, 4.0), ["largest word score 4"]),
])
def test_edges_name_the_axes_whose_best_value_ends_the_grid(best: tuple[float, float], expected: list[str]) -> None:
    pairs = [(w, s) for w in (0.5, 1.0, 2.0, 4.0) for s in (-1.0, 0.0, 1.0, 4.0)]
    tuning = _tuning({pair: 0.1 if pair == best else 0.3 for pair in pairs})
    assert (tuning.lm_weight, tuning.word_score) == best
    assert tuning.edges() == expected


def test_edges_need_three_values_on_an_axis() -> None:
    # Two word scores have no inside; a single LM weight is no search at all.
    tuning = _tuning({(1.0, 0.0): 0.3, (1.0, 2.0): 0.1})
    assert tuning.edges() == []

