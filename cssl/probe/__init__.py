"""The phonetic probe: k-means units of every level of a model scored against phone alignments."""

from cssl.probe.run import LevelScores, Probe, ProbeResult, plot_probe
from cssl.probe.scores import UnitScores, kmeans, unit_scores

__all__ = ["LevelScores", "Probe", "ProbeResult", "UnitScores", "kmeans", "plot_probe", "unit_scores"]
