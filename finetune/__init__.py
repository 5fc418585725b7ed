"""Stage 2: CTC fine-tuning of pretrained towers on labeled audio (see ``python -m finetune --help``)."""
