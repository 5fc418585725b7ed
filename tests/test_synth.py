"""Tests of the demo corpus synthesiser: voices, lexicon, sentences, splits, manifests, cache."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cssl import SAMPLE_RATE
from cssl.data.manifest import read_manifest
from cssl.synth import corpus as corpus_module
from cssl.synth.corpus import SPLITS, CorpusConfig, CorpusSummary, make_speakers, plan_utterances, synthesize_corpus
from cssl.synth.espeak import Espeak, EspeakError, list_variants, list_voices
from cssl.synth.sentences import SentenceGenerator
from cssl.synth.word_bank import MIN_VOCAB_SIZE, load_lexicon
from cssl.text.normalize import normalize_text

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
NUM_UTTERANCES = 100
VOCAB_SIZE = 300
SENTENCE = "the quick brown fox jumps over the lazy dog near the river."


@pytest.fixture(scope="module")
def espeak() -> Espeak:
    return Espeak()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> CorpusSummary:
    out_dir = tmp_path_factory.mktemp("corpus")
    return synthesize_corpus(
        out_dir, num_utterances=NUM_UTTERANCES, seed=0, workers=2, vocab_size=VOCAB_SIZE, progress=False
    )


def mean_f0(samples: np.ndarray, rate: int) -> float:
    """Median autocorrelation pitch (Hz) over the loud frames of a recording."""
    frame, hop = int(0.04 * rate), int(0.02 * rate)
    frames = [samples[i : i + frame] for i in range(0, len(samples) - frame, hop)]
    loudest = max(float(np.sqrt(np.mean(f**2))) for f in frames)
    lo, hi = rate // 400, rate // 60  # 60-400 Hz
    pitches = []
    for f in frames:
        if np.sqrt(np.mean(f**2)) < 0.3 * loudest:
            continue
        f = f - f.mean()
        ac = np.correlate(f, f, "full")[frame - 1 :]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            pitches.append(rate / lag)
    return float(np.median(pitches))


def spectrum_distance(a: np.ndarray, b: np.ndarray, rate: int, n: int = 1024) -> float:
    """Mean absolute difference in dB of the level-normalised long-term spectra, 100 Hz-5 kHz."""

    def spectrum(x: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(x, n)[:: n // 2]
        frames = frames[np.sqrt((frames**2).mean(axis=1)) > 0.01]
        power = (np.abs(np.fft.rfft(frames * np.hanning(n), axis=1)) ** 2).mean(axis=0)
        freqs = np.fft.rfftfreq(n, 1 / rate)
        db = 10 * np.log10(power[(freqs > 100) & (freqs < 5000)] + 1e-12)
        return db - db.mean()

    return float(np.abs(spectrum(a) - spectrum(b)).mean())


# eSpeak NG binding


def test_voices_and_variants_are_found() -> None:
    voices = {v.name for v in list_voices()}
    assert {"en", "en-us", "en-gb-scotland", "en-gb-x-rp"} <= voices
    assert "en-shaw" not in voices  # Shavian script, not Latin letters
    variants = set(list_variants())
    assert {"m1", "m3", "f1", "f3", "klatt"} <= variants


def test_synth_returns_float_audio(espeak: Espeak) -> None:
    samples, rate = espeak.synth(SENTENCE, "en-us+m3")
    assert rate == espeak.sample_rate == 22050
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert 1.5 < len(samples) / rate < 8
    assert 0.05 < np.abs(samples).max() <= 1.0


def test_different_speakers_sound_different(espeak: Espeak) -> None:
    male, rate = espeak.synth(SENTENCE, "en-us+m3")
    female, _ = espeak.synth(SENTENCE, "en-us+f3")
    assert mean_f0(female, rate) > 1.5 * mean_f0(male, rate)
    # Spectra: another variant differs far more than the same speaker with a little jitter.
    jittered, _ = espeak.synth(SENTENCE, "en-us+m3", rate=185, pitch=53)
    other_male, _ = espeak.synth(SENTENCE, "en-us+m7")
    same = spectrum_distance(male, jittered, rate)
    assert spectrum_distance(male, female, rate) > 2.5 * same
    assert spectrum_distance(male, other_male, rate) > 2 * same
    low, _ = espeak.synth(SENTENCE, "en-us+m3", pitch=20)
    high, _ = espeak.synth(SENTENCE, "en-us+m3", pitch=80)
    assert mean_f0(high, rate) > 1.3 * mean_f0(low, rate)
    slow, _ = espeak.synth(SENTENCE, "en-us+m3", rate=120)
    fast, _ = espeak.synth(SENTENCE, "en-us+m3", rate=240)
    assert len(slow) > 1.5 * len(fast)


def test_seeded_synth_ignores_what_came_before(espeak: Espeak) -> None:
    first, _ = espeak.synth(SENTENCE, "en+grandpa", seed=3)
    espeak.synth("something else entirely", "en-gb-scotland+f2", pitch=80)
    again, _ = espeak.synth(SENTENCE, "en+grandpa", seed=3)
    np.testing.assert_array_equal(first, again)


def test_bad_voices_are_refused(espeak: Espeak) -> None:
    with pytest.raises(EspeakError, match="no voice"):
        espeak.synth("hello", "xx-nowhere")
    with pytest.raises(EspeakError, match="rate"):
        espeak.synth("hello", "en-us", rate=1000)
    assert espeak.usable("en-us+m3")
    assert not espeak.usable("en-us+no-such-variant")  # eSpeak NG would silently ignore it


def test_missing_library_is_a_clear_error(tmp_path: Path) -> None:
    # In a fresh process: this one has already loaded the library.
    code = "from cssl.synth.espeak import Espeak; Espeak(library_path='/nowhere/libespeak-ng.so')"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert run.returncode != 0
    assert "EspeakError: cannot read the eSpeak NG library /nowhere/libespeak-ng.so" in run.stderr


# Lexicon and sentences


def test_lexicon_size_and_spelling() -> None:
    lexicon = load_lexicon()
    words = lexicon.words()
    assert len(words) >= 2500
    entries = sum(len(getattr(lexicon, f.name)) for f in dataclasses.fields(lexicon))
    assert entries >= 2500  # distinct entries too, not just inflected forms
    assert all(re.fullmatch(r"[a-z]+('[a-z]+)?", w) for w in words)
    assert {"the", "dog", "run", "ran", "running", "happy", "quickly", "children", "don't"} <= words


@pytest.mark.parametrize("vocab_size", [MIN_VOCAB_SIZE, VOCAB_SIZE, 1000])
def test_vocab_size_limits_the_words(vocab_size: int) -> None:
    lexicon = load_lexicon().limit(vocab_size)
    assert vocab_size - 10 <= len(lexicon) <= vocab_size
    generator = SentenceGenerator(seed=1, vocab_size=vocab_size)
    used = {w for s in generator.take(300) for w in s.words}
    assert used <= lexicon.words()
    assert len(used) > 0.5 * len(lexicon)
    with pytest.raises(ValueError, match="vocab_size"):
        load_lexicon().limit(MIN_VOCAB_SIZE - 1)


def test_sentences_are_deterministic_and_well_formed() -> None:
    first = [s.text for s in SentenceGenerator(seed=7).take(200)]
    again = [s.text for s in SentenceGenerator(seed=7).take(200)]
    other = [s.text for s in SentenceGenerator(seed=8).take(200)]
    assert first == again
    assert first != other
    assert len(set(first)) > 190  # varied
    for sentence in SentenceGenerator(seed=7).take(200):
        words = sentence.words
        assert 4 <= len(words) <= 16
        assert re.fullmatch(r"[a-z' ]+", sentence.text) and sentence.text == " ".join(words)
        assert sentence.spoken.endswith("?" if sentence.question else ".")
        for article, word in itertools.pairwise(words):
            if article == "an":
                assert word[0] in "aeiouh", sentence.text
    questions = sum(s.question for s in SentenceGenerator(seed=7).take(200))
    assert 20 < questions < 100


def test_utterance_plans_follow_the_seed() -> None:
    config = CorpusConfig(num_utterances=50, seed=0, vocab_size=VOCAB_SIZE)
    speakers = make_speakers(config)
    assert speakers == make_speakers(config)
    first = list(itertools.islice(plan_utterances(config, speakers), 50))
    again = list(itertools.islice(plan_utterances(config, speakers), 50))
    assert first == again
    other_config = dataclasses.replace(config, seed=1)
    other = list(itertools.islice(plan_utterances(other_config, make_speakers(other_config)), 50))
    assert [p.text for p in other] != [p.text for p in first]
    assert [p.speaker for p in other] != [p.speaker for p in first]
    # Each block of 20 holds every split in its share.
    assert [p.split for p in first[:20]].count("unlabeled") == 14
    assert [p.split for p in first[:20]].count("test") == 2


# The corpus


def test_test_speakers_are_unseen(corpus: CorpusSummary) -> None:
    split_speakers = {name: set(split.speakers) for name, split in corpus.splits.items()}
    variant = {sid: speaker.variant for sid, speaker in corpus.speakers.items()}
    test_variants = {variant[s] for s in split_speakers["test"]}
    other_variants = {variant[s] for name in ("unlabeled", "train", "dev") for s in split_speakers[name]}
    assert test_variants and other_variants
    assert not test_variants & other_variants
    assert all(corpus.speakers[s].test for s in split_speakers["test"])
    assert len(set().union(*split_speakers.values())) >= 30  # many distinct speakers


def test_manifests_and_audio(corpus: CorpusSummary) -> None:
    counts = {name: split.utterances for name, split in corpus.splits.items()}
    assert counts == {"unlabeled": 70, "train": 15, "dev": 5, "test": 10}
    vocabulary = {normalize_text(w) for w in load_lexicon().limit(VOCAB_SIZE).words()}
    for split in SPLITS:
        tsv = read_manifest(corpus.manifest(split, ".tsv"))
        jsonl = read_manifest(corpus.manifest(split, ".jsonl"))
        assert len(tsv) == len(jsonl) == counts[split]
        assert [e.path for e in tsv] == [e.path for e in jsonl]
        assert [e.num_samples for e in tsv] == [e.num_samples for e in jsonl]
        assert [e.text for e in tsv] == [e.text for e in jsonl]
        assert tsv.labeled == (split != "unlabeled")
        assert abs(tsv.hours - corpus.splits[split].hours) < 1e-6
        for entry in jsonl:
            path = jsonl.audio_path(entry)
            assert path.is_file() and path.parent.parent.name == split
            assert entry.speaker == path.parent.name
            info = sf.info(str(path))
            assert (info.samplerate, info.channels, info.subtype, info.frames) == (
                SAMPLE_RATE,
                1,
                "PCM_16",
                entry.num_samples,
            )
            if entry.text is not None:
                assert set(entry.text.split()) <= vocabulary
    meta = json.loads((corpus.out_dir / "corpus.json").read_text())
    assert meta["complete"] and meta["config"]["seed"] == 0 and meta["utterances"] == NUM_UTTERANCES
    assert set(meta["splits"]["test"]["speakers"]) == set(corpus.splits["test"].speakers)


def test_audio_is_levelled_and_padded(corpus: CorpusSummary) -> None:
    manifest = read_manifest(corpus.manifest("train", ".jsonl"))
    for entry in manifest.entries[:5]:
        audio, _ = sf.read(str(manifest.audio_path(entry)), dtype="float32")
        assert 0.4 < np.abs(audio).max() <= 0.91
        edge = int(0.05 * SAMPLE_RATE)  # at least 0.1 s of silence was put at each end
        assert np.abs(audio[:edge]).max() < 0.01 and np.abs(audio[-edge:]).max() < 0.01


def test_phone_alignments_cover_each_utterance_in_order(corpus: CorpusSummary, espeak: Espeak) -> None:
    from cssl.data.alignment import SILENCE, alignment_path, phone_name, read_alignments

    plans = {p.path: p for p in itertools.islice(plan_utterances(corpus.config, make_speakers(corpus.config)),
                                                NUM_UTTERANCES)}
    kept = total = 0
    for split in SPLITS:
        manifest = read_manifest(corpus.manifest(split, ".tsv"))
        alignments = read_alignments(alignment_path(corpus.manifest(split, ".tsv")))
        assert sorted(alignments) == sorted(e.path for e in manifest)
        for entry in manifest:
            segments = alignments[entry.path]
            # Contiguous (read_alignments checks order and gaps) from 0 to the utterance's length.
            assert segments[0].start == 0 and segments[-1].end == entry.num_samples
            assert segments[0].phone == segments[-1].phone == SILENCE
            # The phones, in order, are those the phonemizer gives for the spoken text, less the
            # few that trimming or a shared onset squeezed to no samples.
            plan = plans[entry.path]
            expected = [p for p in map(phone_name, espeak.phonemize(plan.spoken, plan.voice)) if p != SILENCE]
            spoken = [s.phone for s in segments if s.phone != SILENCE]
            rest = iter(expected)
            assert all(any(q == p for q in rest) for p in spoken)  # an in-order subsequence of them
            kept, total = kept + len(spoken), total + len(expected)
            if split == "train":
                # The alignment follows the audio: silence at the noise floor, vowels loud.
                audio, _ = sf.read(str(manifest.audio_path(entry)), dtype="float32")
                rms = lambda seg: float(np.sqrt(np.mean(audio[seg.start : seg.end] ** 2)))  # noqa: E731
                vowels = [rms(seg) for seg in segments if seg.phone[0] in "aeiouAEIOU@3"]
                peak = float(np.abs(audio).max())
                assert rms(segments[0]) < 0.005 * peak and np.median(vowels) > 0.08 * peak
    assert kept >= 0.97 * total


def test_phoneme_events_are_the_phonemizers_phonemes(espeak: Espeak) -> None:
    from cssl.data.alignment import SILENCE, phone_name

    for text, voice in ((SENTENCE, "en-us+m3"), ("a point always goes.", "en+m3"), ("hello world, twice.", "en+f2")):
        speech = espeak.speak(text, voice, seed=1)
        onsets = [sample for _, sample in speech.phonemes]
        assert onsets == sorted(onsets) and 0 <= onsets[0] and onsets[-1] <= speech.samples.size
        events = [phone_name(m) for m, _ in speech.phonemes]
        assert [p for p in events if p != SILENCE] == [phone_name(p) for p in espeak.phonemize(text, voice)]


def test_same_corpus_with_one_worker(corpus: CorpusSummary, tmp_path: Path) -> None:
    small = synthesize_corpus(tmp_path, num_utterances=20, seed=0, workers=1, vocab_size=VOCAB_SIZE, progress=False)
    # The first 20 utterances of the 100 are planned identically; their audio must be too.
    for split in SPLITS:
        for entry in read_manifest(small.manifest(split, ".jsonl")):
            mine, _ = sf.read(str(tmp_path / entry.path), dtype="int16")
            theirs, _ = sf.read(str(corpus.out_dir / entry.path), dtype="int16")
            np.testing.assert_array_equal(mine, theirs)


def test_cache_is_reused(corpus: CorpusSummary, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_synthesis(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached corpus should have been reused")

    monkeypatch.setattr(corpus_module, "synthesize_utterance", no_synthesis)
    monkeypatch.setattr(corpus_module, "make_speakers", no_synthesis)
    manifest = corpus.manifest("train")
    before = manifest.stat().st_mtime_ns
    start = time.monotonic()
    again = synthesize_corpus(
        corpus.out_dir, num_utterances=NUM_UTTERANCES, seed=0, workers=2, vocab_size=VOCAB_SIZE, progress=False
    )
    assert time.monotonic() - start < 1.0
    assert again.synthesized == 0 and corpus.synthesized == NUM_UTTERANCES
    assert again.splits == corpus.splits and again.speakers == corpus.speakers
    assert manifest.stat().st_mtime_ns == before


def test_hours_stop_the_corpus(tmp_path: Path) -> None:
    hours = 12 / 3600
    summary = synthesize_corpus(tmp_path, hours=hours, seed=3, workers=2, vocab_size=VOCAB_SIZE, progress=False)
    entries = [e for split in SPLITS for e in read_manifest(summary.manifest(split, ".jsonl"))]
    lengths = [e.num_samples for e in sorted(entries, key=lambda e: Path(e.path).name)]  # named by position
    assert sum(lengths) >= hours * 3600 * SAMPLE_RATE
    assert sum(lengths[:-1]) < hours * 3600 * SAMPLE_RATE  # stopped as soon as it was reached
    flac = list(tmp_path.rglob("*.flac"))
    assert len(flac) == summary.utterances == len(lengths)  # nothing left over from synthesising ahead
    # Other parameters make another corpus in the same folder.
    other = synthesize_corpus(tmp_path, num_utterances=3, seed=3, workers=1, vocab_size=VOCAB_SIZE, progress=False)
    assert other.synthesized == 3 and len(list(tmp_path.rglob("*.flac"))) == 3


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="hours or num_utterances"):
        CorpusConfig()
    with pytest.raises(ValueError, match="test variant"):
        CorpusConfig(num_utterances=1, test_variants=("m1",))


def test_keyword_corpus_says_one_listed_word_per_clip(tmp_path: Path) -> None:
    words = ("yes", "no", "stop")
    summary = synthesize_corpus(tmp_path, num_utterances=30, seed=4, workers=1, keywords=words, progress=False)
    labeled = [e for split in ("train", "dev", "test") for e in read_manifest(summary.manifest(split, ".jsonl"))]
    assert len(labeled) == 30 and summary.splits["unlabeled"].utterances == 0  # every clip is labeled
    assert {e.text for e in labeled} <= {w.upper() for w in words}
    assert len({e.text for e in labeled}) == len(words)  # 30 uniform draws of 3 words hit each
    assert all(0.1 < e.duration < 2.0 for e in labeled)  # one word and its padding, not a sentence
    # A sentence corpus's cache key does not mention keywords: corpora written before them stay valid.
    assert "keywords" not in corpus_module._config_json(CorpusConfig(num_utterances=1))
    with pytest.raises(ValueError, match="single lower-case words"):
        CorpusConfig(num_utterances=1, keywords=("turn left",))
