"""A ctypes binding to the eSpeak NG library bundled in the ``espeakng-loader`` wheel.

Only the few calls a corpus synthesiser needs are bound: initialise in synchronous
mode (samples are handed to a callback, ``espeak_Synth`` returns when the text is
spoken), choose a voice by name (``"en-us+m3"``: a language voice plus a variant),
set rate, pitch and pitch range, and speak. No system package is needed: the shared
library and its ``espeak-ng-data`` folder both come from the wheel.

The library keeps global state and is not thread-safe, so it is initialised once per
process and every :class:`Espeak` in a process shares it behind a lock; worker
processes each create their own. That state also carries over from one text to the
next, so :meth:`Espeak.synth` takes a ``seed`` that restarts the library first: the
same arguments then give the same samples, in any process, in any order.
"""

from __future__ import annotations

import _ctypes
import atexit
import ctypes
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cssl.utils.errors import UserError

# espeak_AUDIO_OUTPUT: samples go to the synth callback and espeak_Synth blocks.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
# espeakINITIALIZE_DONT_EXIT: report errors instead of calling exit().
_INITIALIZE_DONT_EXIT = 0x8000
# espeakINITIALIZE_PHONEME_EVENTS: the synth callback also receives one event per phoneme.
_INITIALIZE_PHONEME_EVENTS = 0x0001
# espeak_EVENT_TYPE values read from the callback's event list.
_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
# espeak_POSITION_TYPE: POS_CHARACTER.
_POS_CHARACTER = 1
# Synth flags: UTF-8 text.
_CHARS_UTF8 = 1
# espeak_PARAMETER values.
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_EE_OK = 0

# int callback(short *wav, int numsamples, espeak_EVENT *events); returning 0 continues.
_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class _Event(ctypes.Structure):
    """``espeak_EVENT`` of speak_lib.h; for a phoneme event ``id`` holds its mnemonic."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # samples at the library's rate
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]

LANG_FOLDER = Path("lang") / "gmw"
"""Folder of the data dir that holds the English language voices."""
VARIANT_FOLDER = Path("voices") / "!v"
"""Folder of the data dir that holds the voice variants (``m1``, ``f3``, ``klatt`` ...)."""
MIN_RATE, MAX_RATE = 80, 450
"""Speaking rates, in words per minute, that eSpeak NG accepts."""
# Spoken in Shavian script, not Latin letters: useless for Latin-alphabet text.
_UNUSABLE_LANGUAGES = frozenset({"en-shaw"})


class EspeakError(UserError, RuntimeError):
    """The library cannot be loaded or initialised, or it rejected a voice or a text."""


@dataclass(frozen=True)
class VoiceInfo:
    """An English language voice of the data dir."""

    name: str
    """Name to pass to ``espeak_SetVoiceByName`` (``en``, ``en-us``, ``en-gb-scotland``...)."""
    description: str
    """Human-readable name from the voice file (``English (America)``)."""


def library_paths() -> tuple[Path, Path]:
    """``(shared library, espeak-ng-data folder)`` from the ``espeakng-loader`` wheel."""
    try:
        import espeakng_loader
    except ImportError as err:
        raise EspeakError(
            "the 'espeakng-loader' package is missing; install it with 'pip install espeakng-loader'"
        ) from err
    try:
        return Path(espeakng_loader.get_library_path()), Path(espeakng_loader.get_data_path())
    except RuntimeError as err:
        raise EspeakError(f"espeakng-loader is installed but broken: {err}") from err


def list_voices(data_path: str | Path | None = None) -> list[VoiceInfo]:
    """The English language voices in the data dir, sorted by name (Shavian left out)."""
    data = Path(data_path) if data_path is not None else library_paths()[1]
    voices = []
    for file in sorted((data / LANG_FOLDER).glob("en*")):
        # eSpeak NG looks voices up by file name: "en" is British English, not "en-gb".
        name = file.name.lower()
        if name not in _UNUSABLE_LANGUAGES:
            voices.append(VoiceInfo(name, _read_voice_file(file).get("name", name)))
    return sorted(voices, key=lambda v: v.name)


def list_variants(data_path: str | Path | None = None) -> list[str]:
    """The voice variants in the data dir (``m1``... ``f5``, ``klatt``, ``whisper``...), sorted."""
    data = Path(data_path) if data_path is not None else library_paths()[1]
    return sorted(f.name for f in (data / VARIANT_FOLDER).iterdir() if f.is_file())


def _read_voice_file(path: Path) -> dict[str, str]:
    """First value of each keyword of a voice file (``name``, ``gender``...)."""
    fields: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.strip().partition(" ")
        if key and not key.startswith("//") and key not in fields:
            fields[key] = value.strip()
    return fields


@dataclass(frozen=True)
class Speech:
    """What :meth:`Espeak.speak` returns."""

    samples: np.ndarray
    """float32 samples in [-1, 1]."""
    sample_rate: int
    """Their rate in Hz."""
    phonemes: tuple[tuple[str, int], ...]
    """``(mnemonic, onset sample)`` of each phoneme in spoken order: eSpeak NG's phoneme
    names with stress marks (``'oU``); ``_`` and ``_:`` are pauses. A phoneme lasts until
    the next one starts; the last one (a pause) ends the speech."""


class _Library:
    """The process's loaded and initialised library, and what it needs to start afresh.

    eSpeak NG keeps state between texts that no call resets (the pitch flutter phase
    lives in a function's static variable), so a text's samples depend on what was
    spoken before. :meth:`reset` unloads the library and loads it again, which zeroes
    all of it. The library is loaded from a private copy so that nothing else in the
    process holds it and the unload really happens.
    """

    def __init__(self, library_path: Path, data_path: Path) -> None:
        self.library_path = library_path
        self.data_path = data_path
        self._dir = Path(tempfile.mkdtemp(prefix="cssl-espeak-"))
        atexit.register(shutil.rmtree, self._dir, ignore_errors=True)
        self._path = self._dir / library_path.name
        try:
            shutil.copyfile(library_path, self._path)
        except OSError as err:
            raise EspeakError(f"cannot read the eSpeak NG library {library_path}: {err}") from err
        self.lock = threading.Lock()
        self.chunks: list[np.ndarray] = []
        self.phonemes: list[tuple[str, int]] = []
        # Kept on self: ctypes does not own the callback, and a collected one would crash.
        self._callback = _SynthCallback(self._collect)
        self.libc = ctypes.CDLL(None)
        self.libc.srand.argtypes = [ctypes.c_uint]
        self.libc.srand.restype = None
        self.lib = self._load()

    def _load(self) -> ctypes.CDLL:
        try:
            lib = ctypes.CDLL(str(self._path))
        except OSError as err:
            raise EspeakError(f"cannot load the eSpeak NG library {self.library_path}: {err}") from err
        _declare(lib)
        options = _INITIALIZE_DONT_EXIT | _INITIALIZE_PHONEME_EVENTS
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), options)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}) with data dir {self.data_path}")
        self.sample_rate = int(rate)
        lib.espeak_SetSynthCallback(self._callback)
        return lib

    def reset(self) -> None:
        """Unloads and reloads the library: every internal state back to its start."""
        self.lib.espeak_Terminate()
        handle = self.lib._handle
        del self.lib  # its function pointers dangle once the library is closed
        _dlclose(handle)
        self.lib = self._load()

    def seed(self, seed: int) -> None:
        """Seeds both generators the library draws noise from."""
        if hasattr(self.lib, "espeak_ng_SetRandSeed"):  # older builds only use libc's
            self.lib.espeak_ng_SetRandSeed(seed)
        self.libc.srand(seed & 0xFFFFFFFF)

    def _collect(self, wav: ctypes._Pointer, num_samples: int, events: int) -> int:
        # A NULL buffer marks the end of the text; copy now, the buffer is reused.
        if wav and num_samples > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        if events:
            event = ctypes.cast(events, ctypes.POINTER(_Event))
            i = 0
            while event[i].type != _EVENT_LIST_TERMINATED:
                if event[i].type == _EVENT_PHONEME:
                    self.phonemes.append((event[i].id.decode("ascii", "replace"), int(event[i].sample)))
                i += 1
        return 0


def _declare(lib: ctypes.CDLL) -> None:
    """Argument and result types of the functions used."""
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Terminate.argtypes = []
    lib.espeak_Terminate.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.POINTER(ctypes.c_uint),
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.argtypes = []
    lib.espeak_Synchronize.restype = ctypes.c_int
    # const char *espeak_TextToPhonemes(const void **textptr, int textmode, int phonememode)
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    if hasattr(lib, "espeak_ng_SetRandSeed"):
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = ctypes.c_int


def _dlclose(handle: int) -> None:
    """Closes a shared library handle (``dlclose``, or ``FreeLibrary`` on Windows)."""
    close = getattr(_ctypes, "dlclose", None) or _ctypes.FreeLibrary  # type: ignore[attr-defined]
    close(handle)


_library: _Library | None = None
_library_lock = threading.Lock()


def _get_library(library_path: Path | None, data_path: Path | None) -> _Library:
    global _library
    with _library_lock:
        if _library is None:
            if library_path is None or data_path is None:
                default_library, default_data = library_paths()
                library_path = library_path or default_library
                data_path = data_path or default_data
            _library = _Library(library_path, data_path)
        elif (data_path is not None and data_path != _library.data_path) or (
            library_path is not None and library_path != _library.library_path
        ):
            raise EspeakError(
                f"eSpeak NG is already initialised from {_library.library_path} with {_library.data_path} "
                "in this process; one library and data dir per process"
            )
        return _library


class Espeak:
    """Speaks text with eSpeak NG: ``synth(text, voice, ...)`` -> ``(float32 samples, rate)``.

    The library is initialised on the first instance of a process; later instances
    share it, and calls are serialised by a lock because eSpeak NG is not thread-safe.
    """

    def __init__(self, library_path: str | Path | None = None, data_path: str | Path | None = None) -> None:
        self._lib = _get_library(
            Path(library_path) if library_path is not None else None,
            Path(data_path) if data_path is not None else None,
        )

    @property
    def sample_rate(self) -> int:
        """Rate of the synthesised audio in Hz (22050 for eSpeak NG)."""
        return self._lib.sample_rate

    @property
    def data_path(self) -> Path:
        """The ``espeak-ng-data`` folder in use."""
        return self._lib.data_path

    def synth(
        self,
        text: str,
        voice: str = "en-us",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        volume: int = 100,
        seed: int | None = None,
    ) -> tuple[np.ndarray, int]:
        """Speaks ``text``; returns float32 samples in [-1, 1] and the sample rate (see :meth:`speak`)."""
        speech = self.speak(text, voice, rate, pitch, pitch_range, volume, seed)
        return speech.samples, speech.sample_rate

    def speak(
        self,
        text: str,
        voice: str = "en-us",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        volume: int = 100,
        seed: int | None = None,
    ) -> Speech:
        """Speaks ``text``: float32 samples in [-1, 1], their rate and the phonemes' onsets.

        ``voice`` is a language voice with an optional variant (``en-gb-x-rp+f2``),
        ``rate`` is in words per minute (80-450), ``pitch`` and ``pitch_range`` are
        eSpeak's 0-100 scales (50 is the voice's default). ``volume`` (0-200, default
        100) scales the signal before it is rounded to 16 bits; loud variants clip at
        100, so a corpus that normalises afterwards asks for less.

        eSpeak NG adds random noise (from its own generator and libc's ``rand()``) and
        carries state from one text to the next. With a ``seed``, the library is
        reloaded and both generators seeded first (a few milliseconds), so the samples
        depend on the arguments alone, not on what the process spoke before. libc's
        generator is process-wide: reseeding it affects other users of ``rand()``.
        """
        if not MIN_RATE <= rate <= MAX_RATE:
            raise EspeakError(f"rate {rate} is outside {MIN_RATE}-{MAX_RATE} words per minute")
        for name, value, top in (("pitch", pitch, 100), ("pitch_range", pitch_range, 100), ("volume", volume, 200)):
            if not 0 <= value <= top:
                raise EspeakError(f"{name} {value} is outside 0-{top}")
        lib = self._lib
        with lib.lock:
            if seed is not None:
                lib.reset()
                lib.seed(seed)
            if lib.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise EspeakError(f"eSpeak NG has no voice {voice!r} in {lib.data_path}")
            for parameter, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range), (_VOLUME, volume)):
                lib.lib.espeak_SetParameter(parameter, int(value), 0)
            lib.chunks, lib.phonemes = [], []
            data = text.encode("utf-8") + b"\0"
            buffer = ctypes.create_string_buffer(data, len(data))
            status = lib.lib.espeak_Synth(buffer, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            lib.lib.espeak_Synchronize()
            chunks, lib.chunks = lib.chunks, []
            phonemes, lib.phonemes = lib.phonemes, []
        if status != _EE_OK:
            raise EspeakError(f"espeak_Synth failed (error {status}) for voice {voice!r} and text {text[:60]!r}")
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        return Speech(samples.astype(np.float32) / 32768.0, lib.sample_rate, tuple(phonemes))

    def phonemize(self, text: str, voice: str = "en-us") -> list[str]:
        """The phonemes eSpeak NG would speak for ``text`` (its mnemonics, pauses left out)."""
        lib = self._lib
        with lib.lock:
            if lib.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise EspeakError(f"eSpeak NG has no voice {voice!r} in {lib.data_path}")
            rest = ctypes.c_char_p(text.encode("utf-8"))
            clauses = []
            while rest.value:  # one clause per call; the pointer moves past it
                clauses.append(lib.lib.espeak_TextToPhonemes(ctypes.byref(rest), _CHARS_UTF8, ord("|") << 8))
        return [p for clause in clauses for word in (clause or b"").decode().split() for p in word.split("|") if p]

    def usable(self, voice: str) -> bool:
        """True when ``voice`` is accepted and speaks a short word as non-silent audio."""
        # An unknown variant is silently ignored by eSpeak NG, so check the file exists.
        _, _, variant = voice.partition("+")
        if variant and not (self.data_path / VARIANT_FOLDER / variant).is_file():
            return False
        try:
            samples, _ = self.synth("hello", voice)
        except EspeakError:
            return False
        return samples.size > 0 and float(np.abs(samples).max()) > 1e-3
