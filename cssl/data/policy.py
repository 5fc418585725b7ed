"""What audio the suite accepts, in one place: file endings, rates, channels, length tolerance.

The manifest builder, the data loaders, evaluation and transcription apply the same
rules, so a file rejected by one is rejected by all. Kept free of heavy imports: the
command line reads its defaults from here.
"""

from __future__ import annotations

import os

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au")
"""File endings taken as audio when scanning folders (case-insensitive)."""
MIN_RATE = 8000
"""Files sampled below this rate (Hz) are rejected: too little bandwidth for speech."""
MAX_CHANNELS = 2
"""Files with more channels are rejected rather than silently downmixed (multi-mic arrays)."""
LENGTH_TOLERANCE = 0.01
"""Share by which a manifest's sample count may differ from the decoded audio (at least 160 samples)."""
SCAN_WORKERS = max(1, min(8, os.cpu_count() or 1))
"""Worker processes that open files in parallel when scanning."""
