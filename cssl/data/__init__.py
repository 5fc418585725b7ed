"""Audio data: manifests, decoding, sampling, augmentation and batching."""
