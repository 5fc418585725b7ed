"""Scoring: WER/CER, evaluation of a recognizer on a manifest, probability calibration (temperature, ECE)."""
