"""The classic peer for closed-vocabulary recognition: PocketSphinx 5 (its en-us acoustic model and
CMU dictionary, as the pip wheel ships them) searching a JSGF grammar that allows one of the words.

    pip install pocketsphinx==5.1.1        # or: pip install -e .[bench]

:func:`available` says whether it is installed; :func:`recognize_manifest` decodes every entry of
a labeled manifest with it and scores the hypotheses with the suite's own WER/CER, so both
recognisers are measured by one ruler.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np

from cssl.data.audio import load_audio
from cssl.data.manifest import read_manifest
from cssl.score.metrics import error_rates


def available() -> bool:
    """Whether the ``pocketsphinx`` package is importable."""
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        return False
    return True


def grammar(words: list[str]) -> str:
    """A JSGF grammar whose one public rule is any single word of ``words``."""
    return "#JSGF V1.0;\ngrammar words;\npublic <word> = " + " | ".join(words) + " ;\n"


def recognize_manifest(manifest: Path, words: list[str]) -> dict:
    """WER, CER, empty hypotheses and CPU seconds of PocketSphinx with the word grammar on ``manifest``."""
    from pocketsphinx import Decoder

    decoder = Decoder(loglevel="FATAL")  # en-us acoustic model, cmudict: the wheel's defaults
    missing = [w for w in words if decoder.lookup_word(w) is None]
    if missing:
        raise ValueError(f"PocketSphinx's dictionary lacks {missing}: it cannot be given these words")
    decoder.add_jsgf_string("words", grammar(words))
    decoder.activate_search("words")
    entries = read_manifest(manifest)
    refs, hyps = [], []
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    clock = time.monotonic()
    for entry in entries:
        wave = load_audio(entries.audio_path(entry))  # float32 at 16 kHz: the model's rate
        pcm = (np.clip(wave.numpy(), -1.0, 1.0) * 32767).astype(np.int16)
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        refs.append(entry.text or "")
        hyps.append(hyp.hypstr if hyp is not None else "")
    after = resource.getrusage(resource.RUSAGE_SELF)
    rates = error_rates(refs, hyps)
    return {"wer": rates.wer, "cer": rates.cer, "empty": sum(not h for h in hyps), "utterances": len(refs),
            "cpu_min": (after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime) / 60,
            "wall_min": (time.monotonic() - clock) / 60}
