"""Curating data with a model: which utterances to label (coverage of the pile by pretrained embeddings)."""
