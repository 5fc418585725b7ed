"""Stage 1: contrastive pretraining on unlabeled audio (see ``python -m pretrain --help``)."""
