from __future__ import annotations

import math

import torch

from cssl.score.calibration import expected_calibration_error, fit_temperature, word_confidences


def test_fit_recovers_a_known_temperature() -> None:
    torch.manual_seed(0)
    logits = torch.randn(20000, 8) * 3
    for true_tau in (0.5, 1.0, 2.5):
        labels = torch.multinomial((logits / true_tau).softmax(-1), 1).squeeze(1)
        tau = fit_temperature(lambda t: float(torch.nn.functional.cross_entropy(logits / t, labels)))
        assert abs(tau - true_tau) / true_tau < 0.08, (true_tau, tau)


def test_ece_on_known_values() -> None:
    assert expected_calibration_error([0.9, 0.9, 0.9, 0.9], [True, True, True, False]) == pytest_approx(0.15)
    assert expected_calibration_error([0.25, 0.75], [False, True]) == pytest_approx(0.25)
    assert expected_calibration_error([], []) == 0.0


def pytest_approx(value: float):
    import pytest

    return pytest.approx(value, abs=1e-9)


def test_word_confidences_follow_the_greedy_path() -> None:
    symbols = ["<blank>", "<unk>", "|", "A", "B"]
    path = [3, 3, 0, 2, 4, 0, 4]  # A A _ | B _ B -> words "A", "BB"
    probs = torch.full((len(path), 5), 0.05)
    for t, s in enumerate(path):
        probs[t, s] = 0.8
    words = word_confidences(probs.log(), symbols)
    assert [w.word for w in words] == ["A", "BB"]
    assert math.isclose(words[0].confidence, 0.8 * 0.8, rel_tol=1e-5)
    assert math.isclose(words[1].confidence, 0.8 * 0.8, rel_tol=1e-5)
    assert (words[0].start, words[1].start) == (0, 4)
