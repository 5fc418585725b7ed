"""A synthetic speech corpus with speakers, splits and manifests, spoken by eSpeak NG.

:func:`synthesize_corpus` writes a small LibriSpeech-like corpus that the whole
pipeline can run on without downloading anything::

    out_dir/
      unlabeled/<speaker>/<utt>.flac   train/...   dev/...   test/...
      unlabeled.tsv  train.tsv train.wrd train.ltr  dev.*  test.*   (fairseq)
      unlabeled.jsonl  train.jsonl  dev.jsonl  test.jsonl            (NeMo, with speaker)
      unlabeled.phones.jsonl  train.phones.jsonl  ...                 (phone alignments)
      corpus.json                                                    (parameters, counts, speakers)

Labeled manifests carry normalised transcripts (upper case, as :mod:`cssl.text.normalize`
writes them); the unlabeled manifests carry none. Every split also gets its phone
alignments (:mod:`cssl.data.alignment`): eSpeak NG reports each phoneme's onset as it
speaks, and the onsets follow the audio through resampling, trimming and padding.

A speaker is an English language voice (accent) with a voice variant, a base pitch,
pitch range and speaking rate; every utterance jitters these around its speaker.
Test speakers use voice variants that no other split hears, so test word error rate
measures generalisation to unseen voices.

Every utterance's sentence, speaker and parameters are drawn up front from the seed,
one utterance after another, and each utterance restarts eSpeak NG with its own seed,
so the corpus, down to the samples, is the same whatever the number of worker
processes. ``corpus.json`` is written last and doubles as a cache: asking again for
the same corpus in the same folder returns at once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from cssl import SAMPLE_RATE
from cssl.data.alignment import Segment, alignment_path, segments_from_onsets, write_alignments
from cssl.data.audio import resample
from cssl.data.manifest import Entry, Manifest, write_manifest
from cssl.synth.espeak import MAX_RATE, MIN_RATE, Espeak, list_variants, list_voices
from cssl.synth.sentences import SentenceGenerator
from cssl.synth.word_bank import MIN_VOCAB_SIZE
from cssl.text.normalize import normalize_text
from cssl.utils.io import atomic_write_lines
from cssl.utils.progress import ProgressLine

SPLITS = ("unlabeled", "train", "dev", "test")
"""Split names, in the order their manifests are written."""

LABELED_SPLITS = ("train", "dev", "test")
"""Splits whose manifests carry transcripts."""

CORPUS_FILE = "corpus.json"
"""Parameters and summary of a finished corpus; also the cache key."""

FORMAT_VERSION = 2
"""Bumped when the same parameters would give a different corpus."""

KEYWORD_SHARES = {"unlabeled": 0.0, "train": 0.8, "dev": 0.1, "test": 0.1}
"""Split shares of a keyword corpus: its point is labeled clips, so none is left unlabeled."""

SEEN_VARIANTS = tuple(
    """m1 m2 m3 m5 m6 m7 m8 f1 f2 f4 f5 klatt klatt2 klatt4 klatt5 Andy Annie Andrea Alex Gene Lee Mike
    adam antonio belinda david edward grandma grandpa iven max michel paul quincy rob robert steph travis
    anika Nguyen marcelo ed""".split()
)
"""Voice variants of the unlabeled, train and dev speakers: human-sounding ones, no robots,
echoes or whispers."""

TEST_VARIANTS = tuple("m4 f3 klatt3 Alicia Denis benjamin gustave sandro shelby Michael".split())
"""Voice variants heard only in the test split."""


@dataclass(frozen=True)
class CorpusConfig:
    """What to synthesise; everything here (and nothing else) determines the corpus."""

    hours: float | None = None
    """Stop when the corpus holds this much audio (all splits together)."""
    num_utterances: int | None = None
    """Stop after this many utterances; with ``hours`` too, whichever comes first."""
    seed: int = 0
    """Seed of every random choice: sentences, speakers, splits, parameters."""
    vocab_size: int | None = None
    """Keep only this many of the most common words (None: the whole lexicon)."""
    shares: dict[str, float] = field(
        default_factory=lambda: {"unlabeled": 0.70, "train": 0.15, "dev": 0.05, "test": 0.10}
    )
    """Share of utterances per split."""
    num_speakers: int = 48
    """Speakers of the unlabeled, train and dev splits."""
    num_test_speakers: int = 12
    """Speakers of the test split (with variants of ``test_variants`` only)."""
    seen_variants: tuple[str, ...] = SEEN_VARIANTS
    """Voice variants for the unlabeled, train and dev speakers."""
    test_variants: tuple[str, ...] = TEST_VARIANTS
    """Voice variants reserved for test speakers."""
    pitch: tuple[int, int] = (30, 70)
    """Range of speakers' base pitch (eSpeak's 0-100 scale)."""
    pitch_range: tuple[int, int] = (30, 80)
    """Range of speakers' base intonation range (0-100)."""
    rate: tuple[int, int] = (140, 200)
    """Range of speakers' base speaking rate in words per minute."""
    pitch_jitter: int = 5
    """Each utterance moves pitch and pitch range by up to this much from its speaker's."""
    rate_jitter: float = 0.07
    """Each utterance scales its speaker's rate by up to this fraction either way."""
    silence: tuple[float, float] = (0.10, 0.35)
    """Range of the silence, in seconds, put before and after the speech."""
    gain: tuple[float, float] = (0.5, 1.0)
    """Range of the peak level, as a fraction of 0.9 full scale."""
    noise_db: tuple[float, float] = (-75.0, -55.0)
    """Range of the white noise floor in dB below full scale, so silence is not digital zero."""
    min_words: int = 4
    """Fewest words in a sentence."""
    max_words: int = 16
    """Most words in a sentence."""
    keywords: tuple[str, ...] = ()
    """When given, every utterance says one of these words (drawn uniformly) instead of a sentence:
    a keyword corpus for command-and-control vocabularies."""

    def __post_init__(self) -> None:
        if self.hours is None and self.num_utterances is None:
            raise ValueError("give hours or num_utterances (or both) to size the corpus")
        if self.hours is not None and self.hours <= 0:
            raise ValueError(f"hours must be positive, got {self.hours}")
        if self.num_utterances is not None and self.num_utterances <= 0:
            raise ValueError(f"num_utterances must be positive, got {self.num_utterances}")
        if set(self.shares) != set(SPLITS) or any(v < 0 for v in self.shares.values()):
            raise ValueError(f"shares must give a non-negative share to each of {SPLITS}, got {self.shares}")
        if not sum(self.shares.values()) > 0:
            raise ValueError("shares must not all be zero")
        if set(self.seen_variants) & set(self.test_variants):
            raise ValueError("a test variant is also a seen variant: test speakers would not be unseen")
        if self.num_speakers < 1 or self.num_test_speakers < 1:
            raise ValueError("num_speakers and num_test_speakers must be at least 1")
        bad = [w for w in self.keywords if not w.strip() or len(w.split()) != 1 or w != w.strip().lower()]
        if bad:
            raise ValueError(f"keywords must be single lower-case words, got {bad}")
        if self.vocab_size is not None and self.vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(f"vocab_size must be at least {MIN_VOCAB_SIZE}, got {self.vocab_size}")


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: voice, variant and the base of its prosody."""

    id: str
    """Folder name and manifest label, e.g. ``en-us_m3_p48_r171``."""
    voice: str
    """eSpeak NG language voice (accent), e.g. ``en-gb-scotland``."""
    variant: str
    """eSpeak NG voice variant, e.g. ``m3``, ``f2``, ``klatt``."""
    pitch: int
    """Base pitch, 0-100."""
    pitch_range: int
    """Base intonation range, 0-100."""
    rate: int
    """Base speaking rate in words per minute."""
    test: bool
    """True for a test-only speaker."""

    @property
    def espeak_voice(self) -> str:
        """The name eSpeak NG takes: ``voice+variant``."""
        return f"{self.voice}+{self.variant}"


@dataclass(frozen=True)
class UtterancePlan:
    """Everything needed to synthesise one utterance, fixed before any audio is made."""

    index: int
    """Position in the corpus (also the utterance id)."""
    split: str
    """Split it belongs to."""
    speaker: str
    """Speaker id."""
    path: str
    """Audio file relative to the corpus folder."""
    text: str
    """Transcript, lower-case words."""
    spoken: str
    """Text given to the synthesiser (with punctuation for pauses and intonation)."""
    voice: str
    """eSpeak NG voice name with variant."""
    rate: int
    """Words per minute."""
    pitch: int
    """Pitch, 0-100."""
    pitch_range: int
    """Intonation range, 0-100."""
    lead: float
    """Seconds of silence before the speech."""
    trail: float
    """Seconds of silence after the speech."""
    peak: float
    """Peak level of the written audio."""
    noise_db: float
    """Noise floor in dB below full scale."""
    seed: int
    """Seed of eSpeak NG's noise generators and of the noise floor."""


@dataclass(frozen=True)
class SplitSummary:
    """Size of one split."""

    utterances: int
    """Number of utterances."""
    hours: float
    """Total audio in hours."""
    speakers: tuple[str, ...]
    """Ids of the speakers heard in it."""


@dataclass(frozen=True)
class CorpusSummary:
    """A finished corpus: where it is, what it holds, and whether this call made it."""

    out_dir: Path
    """Corpus folder."""
    config: CorpusConfig
    """Parameters it was made with."""
    splits: dict[str, SplitSummary]
    """Per-split size."""
    speakers: dict[str, Speaker]
    """Every speaker defined for the corpus, by id."""
    synthesized: int
    """Utterances synthesised by this call (0 when the cache was reused)."""
    seconds: float
    """Wall-clock seconds this call took."""

    @property
    def utterances(self) -> int:
        """Utterances in all splits."""
        return sum(s.utterances for s in self.splits.values())

    @property
    def hours(self) -> float:
        """Audio in all splits, in hours."""
        return sum(s.hours for s in self.splits.values())

    def table(self) -> str:
        """A short markdown table: utterances, hours and speakers per split."""
        rows = ["| split | utterances | hours | speakers |", "|---|---:|---:|---:|"]
        rows += [f"| {name} | {s.utterances} | {s.hours:.2f} | {len(s.speakers)} |" for name, s in self.splits.items()]
        made = f"synthesized {self.synthesized} utterances" if self.synthesized else "reused the cached corpus"
        return "\n".join([f"{self.out_dir}: {made} in {self.seconds:.1f} s", "", *rows])

    def manifest(self, split: str, suffix: str = ".tsv") -> Path:
        """Path of a split's manifest: ``.tsv`` (fairseq) or ``.jsonl`` (NeMo)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits are {SPLITS}")
        return self.out_dir / f"{split}{suffix}"


def synthesize_corpus(
    out_dir: str | Path,
    hours: float | None = None,
    num_utterances: int | None = None,
    seed: int = 0,
    workers: int = 2,
    vocab_size: int | None = None,
    progress: bool = True,
    num_speakers: int = CorpusConfig.num_speakers,
    keywords: Sequence[str] = (),
) -> CorpusSummary:
    """Synthesises a corpus into ``out_dir`` (or reuses the one already there).

    Give ``hours`` (total audio), ``num_utterances``, or both (whichever is reached
    first). ``workers`` processes synthesise in parallel; ``workers <= 1`` runs in this
    process. ``num_speakers`` counts the speakers of the unlabeled, train and dev splits.
    ``keywords``: every utterance says one of these words (a keyword corpus, all of it labeled:
    :data:`KEYWORD_SHARES`). The result does not depend on ``workers`` or ``progress``.
    """
    config = CorpusConfig(
        hours=hours, num_utterances=num_utterances, seed=seed, vocab_size=vocab_size, num_speakers=num_speakers,
        keywords=tuple(keywords), **({"shares": dict(KEYWORD_SHARES)} if keywords else {}),
    )
    return build_corpus(config, out_dir, workers=workers, progress=progress)


def build_corpus(config: CorpusConfig, out_dir: str | Path, workers: int = 2, progress: bool = True) -> CorpusSummary:
    """:func:`synthesize_corpus` for a full :class:`CorpusConfig`."""
    start = time.monotonic()
    out_dir = Path(out_dir)
    cached = load_summary(out_dir, config)
    if cached is not None:
        return dataclasses.replace(cached, seconds=time.monotonic() - start)
    _clear_previous(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(
        out_dir / CORPUS_FILE, {"format_version": FORMAT_VERSION, "config": _config_json(config), "complete": False}
    )
    speakers = make_speakers(config)
    plans = plan_utterances(config, speakers)
    kept = _run(plans, out_dir, config, workers, _Progress(config, enabled=progress))
    splits = _write_manifests(out_dir, kept)
    summary = CorpusSummary(out_dir, config, splits, {s.id: s for s in speakers}, len(kept), time.monotonic() - start)
    _write_json(out_dir / CORPUS_FILE, _summary_json(summary))
    return summary


def load_summary(out_dir: str | Path, config: CorpusConfig) -> CorpusSummary | None:
    """The summary of a complete corpus in ``out_dir`` made with ``config``, else None."""
    out_dir = Path(out_dir)
    try:
        meta = json.loads((out_dir / CORPUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not meta.get("complete")
        or meta.get("format_version") != FORMAT_VERSION
        or meta.get("config") != _config_json(config)
        or not all(
            (out_dir / f"{split}{suffix}").is_file() for split in SPLITS for suffix in (".tsv", ".jsonl", ".phones.jsonl")
        )
    ):
        return None
    splits = {
        name: SplitSummary(s["utterances"], s["hours"], tuple(s["speakers"])) for name, s in meta["splits"].items()
    }
    speakers = {sid: Speaker(id=sid, **fields) for sid, fields in meta["speakers"].items()}
    return CorpusSummary(out_dir, config, splits, speakers, 0, 0.0)


# Planning: every random choice, made up front from the seed.


def make_speakers(config: CorpusConfig, espeak: Espeak | None = None) -> list[Speaker]:
    """The corpus's speakers: seen speakers first, then test speakers.

    Variants are cycled in a seeded order so that each one is used about equally;
    voices and variants that this eSpeak NG build lacks or cannot speak are left out.
    """
    espeak = espeak or Espeak()
    voices = [v.name for v in list_voices(espeak.data_path) if espeak.usable(v.name)]
    installed = set(list_variants(espeak.data_path))
    rng = random.Random(f"{config.seed}:speakers")
    speakers: list[Speaker] = []
    for test, variants, count in (
        (False, config.seen_variants, config.num_speakers),
        (True, config.test_variants, config.num_test_speakers),
    ):
        usable = [v for v in variants if v in installed and espeak.usable(f"{voices[0]}+{v}")] if voices else []
        if not usable:
            raise RuntimeError(f"none of the voice variants {list(variants)} can be used with this eSpeak NG build")
        order = usable[:]
        rng.shuffle(order)
        for i in range(count):
            speakers.append(_speaker(rng, config, rng.choice(voices), order[i % len(order)], test, speakers))
    return speakers


def _speaker(
    rng: random.Random, config: CorpusConfig, voice: str, variant: str, test: bool, taken: Sequence[Speaker]
) -> Speaker:
    ids = {s.id for s in taken}
    while True:  # redraw the prosody on the (rare) clash of ids
        pitch = rng.randint(*config.pitch)
        rate = rng.randint(*config.rate)
        pitch_range = rng.randint(*config.pitch_range)
        sid = f"{voice}_{variant}_p{pitch}_r{rate}"
        if sid not in ids:
            return Speaker(sid, voice, variant, pitch, pitch_range, rate, test)


def plan_utterances(config: CorpusConfig, speakers: Sequence[Speaker]) -> Iterator[UtterancePlan]:
    """Utterance plans in corpus order, without end (the caller stops).

    Splits are dealt in blocks of 20 utterances shuffled with the seed, so every block
    holds each split's share and small corpora have every split.
    """
    sentences = SentenceGenerator(
        config.seed, config.vocab_size, min_words=config.min_words, max_words=config.max_words
    )
    seen = [s for s in speakers if not s.test]
    test = [s for s in speakers if s.test]
    block = _split_block(config.shares)
    index = 0
    while True:
        order = block[:]
        random.Random(f"{config.seed}:block:{index // len(block)}").shuffle(order)
        for split in order:
            rng = random.Random(f"{config.seed}:utterance:{index}")
            speaker = rng.choice(test if split == "test" else seen)
            if config.keywords:
                word = rng.choice(config.keywords)
                text, spoken = word, word + "."
            else:
                sentence = sentences.sample()
                text, spoken = sentence.text, sentence.spoken
            yield _plan(config, rng, index, split, speaker, text, spoken)
            index += 1


def _split_block(shares: dict[str, float], size: int = 20) -> list[str]:
    """``size`` split names in proportion to ``shares`` (largest remainders), each share > 0 at least once."""
    total = sum(shares.values())
    exact = {s: shares[s] / total * size for s in SPLITS}
    counts = {s: max(int(exact[s]), 1 if shares[s] > 0 else 0) for s in SPLITS}
    by_remainder = sorted(SPLITS, key=lambda s: exact[s] - int(exact[s]), reverse=True)
    for split in by_remainder:
        if sum(counts.values()) >= size:
            break
        counts[split] += 1
    return [s for s in SPLITS for _ in range(counts[s])]


def _plan(
    config: CorpusConfig, rng: random.Random, index: int, split: str, speaker: Speaker, text: str, spoken: str
) -> UtterancePlan:
    def jitter(value: int) -> int:
        return min(100, max(0, value + rng.randint(-config.pitch_jitter, config.pitch_jitter)))

    rate = round(speaker.rate * rng.uniform(1 - config.rate_jitter, 1 + config.rate_jitter))
    return UtterancePlan(
        index=index,
        split=split,
        speaker=speaker.id,
        path=f"{split}/{speaker.id}/{index:07d}.flac",
        text=text,
        spoken=spoken,
        voice=speaker.espeak_voice,
        rate=min(MAX_RATE, max(MIN_RATE, rate)),
        pitch=jitter(speaker.pitch),
        pitch_range=jitter(speaker.pitch_range),
        lead=round(rng.uniform(*config.silence), 3),
        trail=round(rng.uniform(*config.silence), 3),
        peak=round(0.9 * rng.uniform(*config.gain), 4),
        noise_db=round(rng.uniform(*config.noise_db), 1),
        seed=rng.getrandbits(31),
    )


# Synthesis.

_ESPEAK_VOLUME = 40
"""eSpeak volume: low enough that no variant clips before the peak normalisation."""
_TRIM_THRESHOLD = 0.02
"""Leading and trailing samples below this fraction of the peak count as silence."""
_TRIM_MARGIN = 0.02
"""Seconds kept on each side of the speech when trimming."""

_worker_espeak: Espeak | None = None


def _init_worker() -> None:
    """Runs once in each worker process: one thread for torch, one eSpeak NG per process."""
    global _worker_espeak
    # One thread per worker: the workers are the parallelism, and OpenMP pools do not survive fork.
    torch.set_num_threads(1)
    _worker_espeak = Espeak()


def _process_context() -> BaseContext:
    """``fork`` where there is one (as torch's DataLoader does): workers start at once and
    scripts need no ``if __name__ == "__main__"`` guard; ``spawn`` elsewhere."""
    return get_context("fork" if "fork" in get_all_start_methods() else "spawn")


def _synthesize_batch(plans: list[UtterancePlan], out_dir: str) -> list[list[Segment]]:
    """Synthesises and writes ``plans``; returns their phone alignments."""
    global _worker_espeak
    if _worker_espeak is None:
        _worker_espeak = Espeak()
    return [synthesize_utterance(_worker_espeak, plan, Path(out_dir)) for plan in plans]


def render_utterance(espeak: Espeak, plan: UtterancePlan) -> tuple[np.ndarray, list[Segment]]:
    """The utterance's float32 samples at 16 kHz (synthesised, resampled, trimmed, padded,
    levelled) and its phone alignment."""
    # The seed also restarts eSpeak NG, so the audio does not depend on the utterances before.
    speech = espeak.speak(
        plan.spoken, plan.voice, plan.rate, plan.pitch, plan.pitch_range, volume=_ESPEAK_VOLUME, seed=plan.seed
    )
    samples, rate = speech.samples, speech.sample_rate
    if samples.size == 0 or not np.any(samples):
        raise RuntimeError(f"eSpeak NG produced no audio for utterance {plan.index} ({plan.voice}: {plan.text!r})")
    wave = resample(torch.from_numpy(samples), rate, SAMPLE_RATE).numpy()
    first, last = _speech_bounds(wave, SAMPLE_RATE)
    wave = wave[first:last]
    wave = wave * (plan.peak / float(np.abs(wave).max()))
    lead, trail = round(plan.lead * SAMPLE_RATE), round(plan.trail * SAMPLE_RATE)
    wave = np.concatenate([np.zeros(lead, np.float32), wave.astype(np.float32), np.zeros(trail, np.float32)])
    noise = np.random.default_rng(plan.seed).standard_normal(wave.size).astype(np.float32)
    wave += noise * np.float32(10 ** (plan.noise_db / 20))
    # Onsets at the library's rate -> 16 kHz -> trimmed -> after the leading silence.
    onsets = [(name, round(sample * SAMPLE_RATE / rate) - first + lead) for name, sample in speech.phonemes]
    segments = segments_from_onsets(onsets, (lead, lead + last - first), wave.size)
    return np.clip(wave, -1.0, 1.0), segments


def synthesize_utterance(espeak: Espeak, plan: UtterancePlan, out_dir: Path) -> list[Segment]:
    """Renders ``plan`` and writes it as 16-bit FLAC; returns its phone alignment (whose
    last segment ends at the utterance's length in samples)."""
    wave, segments = render_utterance(espeak, plan)
    path = out_dir / plan.path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), wave, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    os.replace(tmp, path)
    return segments


def _speech_bounds(wave: np.ndarray, rate: int) -> tuple[int, int]:
    """``(first, last)`` of the audio without its leading and trailing silence, keeping a short margin."""
    loud = np.flatnonzero(np.abs(wave) > _TRIM_THRESHOLD * np.abs(wave).max())
    margin = round(_TRIM_MARGIN * rate)
    return max(0, int(loud[0]) - margin), min(wave.size, int(loud[-1]) + margin + 1)


def _run(
    plans: Iterator[UtterancePlan], out_dir: Path, config: CorpusConfig, workers: int, progress: _Progress
) -> list[tuple[UtterancePlan, list[Segment]]]:
    """Synthesises plans in order until the corpus is big enough; returns the kept plans and alignments.

    Batches are synthesised ahead in parallel but accepted strictly in order, so the
    stopping point (and hence the corpus) does not depend on the number of workers.
    Audio synthesised past the stopping point is deleted.
    """
    kept = _Kept(config)
    surplus: list[UtterancePlan] = []
    batches = _batches(plans, config, size=8)
    if workers <= 1:
        espeak = Espeak()
        with _torch_threads(1):
            for batch in batches:
                kept.accept(batch, [synthesize_utterance(espeak, plan, out_dir) for plan in batch], surplus)
                progress.update(kept)
                if kept.done:
                    break
    else:
        pool = ProcessPoolExecutor(workers, mp_context=_process_context(), initializer=_init_worker)
        pending: list[tuple[list[UtterancePlan], Future[list[int]]]] = []
        try:
            for batch in batches:
                pending.append((batch, pool.submit(_synthesize_batch, batch, str(out_dir))))
                if len(pending) < 4 * workers:  # keep every worker busy, but plan only a little ahead
                    continue
                batch, future = pending.pop(0)
                kept.accept(batch, future.result(), surplus)
                progress.update(kept)
                if kept.done:
                    break
            for batch, future in pending:
                if kept.done and future.cancel():
                    continue
                kept.accept(batch, future.result(), surplus)
                progress.update(kept)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    progress.close(kept)
    for plan in surplus:
        (out_dir / plan.path).unlink(missing_ok=True)
    return kept.items


class _Kept:
    """The utterances accepted so far, in corpus order, with their alignments, and their total length."""

    def __init__(self, config: CorpusConfig) -> None:
        self.config = config
        self.items: list[tuple[UtterancePlan, list[Segment]]] = []
        self.samples = 0

    @property
    def done(self) -> bool:
        """True once the corpus has its utterances or its hours."""
        if self.config.num_utterances is not None and len(self.items) >= self.config.num_utterances:
            return True
        return self.config.hours is not None and self.samples >= self.config.hours * 3600 * SAMPLE_RATE

    def accept(self, batch: list[UtterancePlan], alignments: list[list[Segment]], surplus: list[UtterancePlan]) -> None:
        """Keeps plans in order until done; the rest go to ``surplus``."""
        for plan, segments in zip(batch, alignments, strict=True):
            if self.done:
                surplus.append(plan)
            else:
                self.items.append((plan, segments))
                self.samples += segments[-1].end


def _batches(plans: Iterator[UtterancePlan], config: CorpusConfig, size: int) -> Iterator[list[UtterancePlan]]:
    """Groups plans, stopping at ``num_utterances`` (``hours`` is checked on the audio)."""
    limit = config.num_utterances if config.num_utterances is not None else math.inf
    batch: list[UtterancePlan] = []
    for plan in plans:
        if plan.index >= limit:
            break
        batch.append(plan)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _torch_threads:
    """Runs a block with ``n`` torch threads, so in-process audio matches the workers' bit for bit."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.saved = 0

    def __enter__(self) -> None:
        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.saved)


class _Progress:
    """Synthesis progress towards the corpus's size (hours of audio, or utterances when no hours are set)."""

    def __init__(self, config: CorpusConfig, enabled: bool) -> None:
        self.by_hours = bool(config.hours)
        total = config.hours if self.by_hours else config.num_utterances
        self.meter = ProgressLine("synthesis", total, unit="h" if self.by_hours else "utterances", enabled=enabled)

    def update(self, kept: _Kept) -> None:
        self.meter.update(*self._position(kept))

    def close(self, kept: _Kept) -> None:
        self.meter.update(*self._position(kept))
        self.meter.close()

    def _position(self, kept: _Kept) -> tuple[float, str]:
        count, hours = len(kept.items), kept.samples / SAMPLE_RATE / 3600
        done = round(hours, 3) if self.by_hours else count
        return done, f"{count} utterances, {hours:.2f} h of audio"


# Output: manifests and corpus.json.


def _write_manifests(out_dir: Path, kept: Sequence[tuple[UtterancePlan, list[Segment]]]) -> dict[str, SplitSummary]:
    """Writes ``<split>.tsv`` (+ ``.wrd``/``.ltr`` when labeled), ``<split>.jsonl`` and
    ``<split>.phones.jsonl`` for each split."""
    summaries = {}
    for split in SPLITS:
        chosen = [(p, a) for p, a in kept if p.split == split]
        labeled = split in LABELED_SPLITS
        entries = [Entry(p.path, a[-1].end, normalize_text(p.text) if labeled else None, p.speaker) for p, a in chosen]
        manifest = Manifest(out_dir.resolve(), entries)
        write_manifest(manifest, out_dir / f"{split}.tsv")
        write_manifest(manifest, out_dir / f"{split}.jsonl")
        write_alignments(alignment_path(out_dir / f"{split}.tsv"), [(p.path, a) for p, a in chosen])
        if not entries:
            # An empty split has no transcripts to write, yet readers expect the label files.
            for suffix in (".wrd", ".ltr") if labeled else ():
                atomic_write_lines(out_dir / f"{split}{suffix}", [])
        summaries[split] = SplitSummary(
            len(entries),
            sum(e.num_samples for e in entries) / SAMPLE_RATE / 3600,
            tuple(sorted({p.speaker for p, _ in chosen})),
        )
    return summaries


def _clear_previous(out_dir: Path) -> None:
    """Removes the splits and manifests of an earlier corpus here (only if it left a corpus.json)."""
    if not (out_dir / CORPUS_FILE).is_file():
        return
    for split in SPLITS:
        shutil.rmtree(out_dir / split, ignore_errors=True)
        for suffix in (".tsv", ".wrd", ".ltr", ".jsonl", ".phones.jsonl"):
            (out_dir / f"{split}{suffix}").unlink(missing_ok=True)
    (out_dir / CORPUS_FILE).unlink()


def _config_json(config: CorpusConfig) -> dict[str, object]:
    # Through JSON once so tuples compare equal to the lists read back from the file. No keywords
    # (sentences) is left out, so corpora written before keyword corpora existed stay valid.
    fields = asdict(config)
    if not fields["keywords"]:
        del fields["keywords"]
    return json.loads(json.dumps(fields))


def _summary_json(summary: CorpusSummary) -> dict[str, object]:
    return {
        "format_version": FORMAT_VERSION,
        "config": _config_json(summary.config),
        "complete": True,
        "utterances": summary.utterances,
        "hours": round(summary.hours, 6),
        "seconds": round(summary.seconds, 2),
        "splits": {name: asdict(s) for name, s in summary.splits.items()},
        "speakers": {sid: {k: v for k, v in asdict(s).items() if k != "id"} for sid, s in summary.speakers.items()},
    }


def _write_json(path: Path, obj: object) -> None:
    atomic_write_lines(path, [json.dumps(obj, indent=2, sort_keys=False)])
