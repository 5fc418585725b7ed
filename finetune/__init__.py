"""Stage 2: CTC fine-tuning of pretrained towers on labeled audio (``cssl finetune --help``)."""
