"""Decoding and recognition: greedy and beam search, n-gram LMs, grammars, the Recognizer API, pseudo-labels."""
