"""A built-in demo corpus: English-like sentences spoken by many synthetic eSpeak NG speakers.

* :mod:`cssl.synth.espeak`: ctypes binding to the eSpeak NG library of the
  ``espeakng-loader`` wheel (:class:`Espeak`, :func:`list_voices`, :func:`list_variants`).
* :mod:`cssl.synth.word_bank`: a few thousand common English words by part of speech.
* :mod:`cssl.synth.sentences`: a seeded grammar that turns them into sentences.
* :mod:`cssl.synth.corpus`: :func:`synthesize_corpus` writes audio, splits and manifests.
"""

from __future__ import annotations

from cssl.synth.corpus import CorpusConfig, CorpusSummary, Speaker, SplitSummary, build_corpus, synthesize_corpus
from cssl.synth.espeak import Espeak, EspeakError, VoiceInfo, list_variants, list_voices
from cssl.synth.sentences import Sentence, SentenceGenerator
from cssl.synth.word_bank import Lexicon, load_lexicon

__all__ = [
    "CorpusConfig",
    "CorpusSummary",
    "Espeak",
    "EspeakError",
    "Lexicon",
    "Sentence",
    "SentenceGenerator",
    "Speaker",
    "SplitSummary",
    "VoiceInfo",
    "build_corpus",
    "list_variants",
    "list_voices",
    "load_lexicon",
    "synthesize_corpus",
]
