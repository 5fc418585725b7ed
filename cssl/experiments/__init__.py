"""Experiment drivers: the demo, the steps the benchmarks compose, label-budget tables."""
