"""Stage 1: contrastive pretraining on unlabeled audio (``cssl pretrain --help``)."""
