"""The built-in English lexicon that synthetic sentences are drawn from.

The words live in ``words/*.txt``, one entry per line with its forms and tags in
whitespace-separated columns (each file's header says which), grouped by part of
speech and ordered from the most to the least common. :func:`load_lexicon` reads
them all; :meth:`Lexicon.limit` keeps the most common entries of every part of speech
so that at most ``vocab_size`` distinct written words remain. A small vocabulary
makes a demo corpus on which word error rate moves with a few minutes of labels.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from cssl.utils.errors import UserError

WORDS_DIR = Path(__file__).parent / "words"
"""Folder of the word lists."""

MIN_VOCAB_SIZE = 60
"""Smallest ``vocab_size`` that still leaves every part of speech a few words."""

_WORD = re.compile(r"^[a-z]+(?:'[a-z]+)?$")

E = TypeVar("E")


class LexiconError(UserError, ValueError):
    """A word list that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Noun:
    """A noun and its plural."""

    singular: str
    """Singular form."""
    plural: str | None
    """Plural form; None for a mass noun (``water``), which takes no plural."""

    @property
    def mass(self) -> bool:
        """True for a mass noun."""
        return self.plural is None

    @property
    def forms(self) -> tuple[str, ...]:
        """Every written form."""
        return (self.singular,) if self.plural is None else (self.singular, self.plural)


@dataclass(frozen=True)
class Verb:
    """A verb's forms and whether it takes an object."""

    base: str
    """Bare form (``eat``): after modals, ``to`` and ``do``."""
    third: str
    """Third person singular present (``eats``)."""
    past: str
    """Simple past (``ate``)."""
    gerund: str
    """-ing form (``eating``)."""
    transitive: bool
    """True when it can take an object."""
    intransitive: bool
    """True when it can go without one."""

    @property
    def forms(self) -> tuple[str, ...]:
        """Every written form."""
        return (self.base, self.third, self.past, self.gerund)


@dataclass(frozen=True)
class Determiner:
    """A determiner and the kinds of noun it goes with."""

    form: str
    """Written form (``a``, ``the``, ``these``)."""
    vowel_form: str | None
    """Form used before a vowel sound (``an``), when it differs."""
    singular: bool
    """Goes with singular count nouns."""
    plural: bool
    """Goes with plurals."""
    mass: bool
    """Goes with mass nouns."""

    @property
    def forms(self) -> tuple[str, ...]:
        """Every written form."""
        return (self.form,) if self.vowel_form is None else (self.form, self.vowel_form)


@dataclass(frozen=True)
class Pronoun:
    """A pronoun's subject and object forms and the verb agreement it takes."""

    subject: str
    """Subject form (``she``)."""
    object: str
    """Object form (``her``)."""
    agreement: str
    """``1s`` (``i``), ``3s`` (he, she, it, someone...) or ``other`` (you, we, they)."""

    @property
    def forms(self) -> tuple[str, ...]:
        """Every written form."""
        return (self.subject,) if self.object == self.subject else (self.subject, self.object)


@dataclass(frozen=True)
class Tagged:
    """A word with one tag: an adverb's kind, a preposition's attachment, a number's value."""

    form: str
    """Written form."""
    tag: str
    """The second column of its word list."""

    @property
    def forms(self) -> tuple[str, ...]:
        """Every written form."""
        return (self.form,)


@dataclass(frozen=True)
class Auxiliary:
    """A form of ``be`` or ``do``, or a modal, and the subjects it agrees with."""

    form: str
    """Written form (``is``, ``doesn't``, ``can``)."""
    kind: str
    """``be``, ``do``, ``modal``, or one of them with ``_not`` when negated."""
    tense: str
    """``present``, ``past``, or ``any`` (modals)."""
    agreement: tuple[str, ...]
    """Subjects it goes with: some of ``1s``, ``3s``, ``other``; or ``("any",)``."""

    @property
    def forms(self) -> tuple[str, ...]:
        """Every written form."""
        return (self.form,)

    def agrees(self, agreement: str) -> bool:
        """True when it goes with a subject of ``agreement`` (``1s``, ``3s`` or ``other``)."""
        return "any" in self.agreement or agreement in self.agreement


@dataclass(frozen=True)
class Lexicon:
    """Every part of speech, each ordered from the most to the least common."""

    nouns: tuple[Noun, ...]
    """Count and mass nouns."""
    verbs: tuple[Verb, ...]
    """Verbs with all their forms."""
    adjectives: tuple[str, ...]
    """Adjectives."""
    adverbs: tuple[Tagged, ...]
    """Adverbs; tag: manner, time, place, frequency, degree or predicative."""
    determiners: tuple[Determiner, ...]
    """Articles, demonstratives, possessives and quantifiers."""
    pronouns: tuple[Pronoun, ...]
    """Personal and indefinite pronouns."""
    prepositions: tuple[Tagged, ...]
    """Prepositions; tag: noun, verb or both (what the phrase may follow)."""
    conjunctions: tuple[Tagged, ...]
    """Conjunctions; tag: coordinating or subordinating."""
    numbers: tuple[Tagged, ...]
    """Cardinal number words; tag: the value."""
    auxiliaries: tuple[Auxiliary, ...]
    """Forms of be and do, and modals, with their negations."""
    question_words: tuple[Tagged, ...]
    """Question words; tag: object, subject, adjunct or determiner."""

    def words(self) -> frozenset[str]:
        """Every distinct written word: what a sentence drawn from this lexicon may use."""
        return frozenset(form for part in fields(self) for entry in getattr(self, part.name) for form in _forms(entry))

    def __len__(self) -> int:
        return len(self.words())

    def limit(self, vocab_size: int | None) -> Lexicon:
        """The most common entries of each part of speech, at most ``vocab_size`` distinct words.

        Parts of speech are interleaved by their share of running English text
        (:data:`VOCAB_SHARES`), so a few hundred words still hold every part of
        speech and the grammar can use all its templates.
        """
        if vocab_size is None:
            return self
        if vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(f"vocab_size must be at least {MIN_VOCAB_SIZE}, got {vocab_size}")
        kept = _select(self, vocab_size)
        return replace(self, **{name: tuple(entries) for name, entries in kept.items()})


VOCAB_SHARES: dict[str, float] = {
    "nouns": 0.34,
    "verbs": 0.24,
    "adjectives": 0.14,
    "adverbs": 0.05,
    "determiners": 0.05,
    "pronouns": 0.04,
    "prepositions": 0.04,
    "auxiliaries": 0.04,
    "conjunctions": 0.02,
    "numbers": 0.02,
    "question_words": 0.02,
}
"""Share of a limited vocabulary's words given to each part of speech."""


def _forms(entry: object) -> tuple[str, ...]:
    return (entry,) if isinstance(entry, str) else entry.forms  # type: ignore[attr-defined]


def _select(lexicon: Lexicon, vocab_size: int) -> dict[str, list[Any]]:
    """Merges the parts of speech by share and keeps entries while the words fit."""
    queue: list[tuple[float, int, str, Any]] = []
    for order, (name, share) in enumerate(VOCAB_SHARES.items()):
        used = 0
        for entry in getattr(lexicon, name):
            used += len(_forms(entry))
            # An entry's turn comes when its part of speech has used its share so far.
            queue.append((used / share, order, name, entry))
    queue.sort(key=lambda item: (item[0], item[1]))
    kept: dict[str, list[Any]] = {name: [] for name in VOCAB_SHARES}
    words: set[str] = set()
    for _, _, name, entry in queue:
        new = set(_forms(entry)) - words
        if len(words) + len(new) > vocab_size:
            break
        words |= new
        kept[name].append(entry)
    return kept


@functools.cache
def load_lexicon(words_dir: Path = WORDS_DIR) -> Lexicon:
    """Reads every word list of ``words_dir`` (cached: the lists are read once per process)."""
    return Lexicon(
        nouns=_read(words_dir / "nouns.txt", (1, 2), _noun),
        verbs=_read(words_dir / "verbs.txt", (5,), _verb),
        adjectives=_read(words_dir / "adjectives.txt", (1,), lambda cols: cols[0]),
        adverbs=_read(
            words_dir / "adverbs.txt", (2,), _tagged({"manner", "time", "place", "frequency", "degree", "predicative"})
        ),
        determiners=_read(words_dir / "determiners.txt", (2,), _determiner),
        pronouns=_read(words_dir / "pronouns.txt", (3,), _pronoun),
        prepositions=_read(words_dir / "prepositions.txt", (2,), _tagged({"noun", "verb", "both"})),
        conjunctions=_read(words_dir / "conjunctions.txt", (2,), _tagged({"coordinating", "subordinating"})),
        numbers=_read(words_dir / "numbers.txt", (2,), _number),
        auxiliaries=_read(words_dir / "auxiliaries.txt", (4,), _auxiliary),
        question_words=_read(
            words_dir / "question_words.txt", (2,), _tagged({"object", "subject", "adjunct", "determiner"})
        ),
    )


def _read(path: Path, widths: Sequence[int], parse: Callable[[list[str]], E]) -> tuple[E, ...]:
    """Parses each non-comment line of ``path``; errors name the file and line."""
    if not path.is_file():
        raise LexiconError(f"{path}: word list not found")
    entries = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        cols = line.split("#", 1)[0].split()
        if not cols:
            continue
        if len(cols) not in widths:
            raise LexiconError(f"{path}:{lineno}: expected {' or '.join(map(str, widths))} columns, got {line!r}")
        try:
            entry = parse(cols)
            _check_words(_forms(entry))
        except ValueError as err:
            raise LexiconError(f"{path}:{lineno}: {err}") from None
        entries.append(entry)
    if not entries:
        raise LexiconError(f"{path}: no entries")
    return tuple(entries)


def _check_words(forms: Iterable[str]) -> None:
    for form in forms:
        if not _WORD.match(form):
            raise ValueError(f"{form!r} is not a lower-case word (letters and one inner apostrophe)")


def _noun(cols: list[str]) -> Noun:
    return Noun(cols[0], cols[1] if len(cols) > 1 else None)


def _verb(cols: list[str]) -> Verb:
    objects = {"transitive": (True, False), "intransitive": (False, True), "both": (True, True)}
    if cols[4] not in objects:
        raise ValueError(f"object column must be one of {sorted(objects)}, got {cols[4]!r}")
    return Verb(cols[0], cols[1], cols[2], cols[3], *objects[cols[4]])


def _determiner(cols: list[str]) -> Determiner:
    form, _, vowel_form = cols[0].partition(",")
    if not cols[1] or set(cols[1]) - set("spm"):
        raise ValueError(f"noun kinds must be letters of 'spm', got {cols[1]!r}")
    return Determiner(form, vowel_form or None, "s" in cols[1], "p" in cols[1], "m" in cols[1])


def _pronoun(cols: list[str]) -> Pronoun:
    if cols[2] not in ("1s", "3s", "other"):
        raise ValueError(f"agreement must be 1s, 3s or other, got {cols[2]!r}")
    return Pronoun(*cols)


def _number(cols: list[str]) -> Tagged:
    if not cols[1].isdigit():
        raise ValueError(f"value must be a whole number, got {cols[1]!r}")
    return Tagged(*cols)


def _auxiliary(cols: list[str]) -> Auxiliary:
    kinds = {"be", "do", "modal", "be_not", "do_not", "modal_not"}
    if cols[1] not in kinds:
        raise ValueError(f"kind must be one of {sorted(kinds)}, got {cols[1]!r}")
    if cols[2] not in ("present", "past", "any"):
        raise ValueError(f"tense must be present, past or any, got {cols[2]!r}")
    agreement = tuple(cols[3].split(","))
    if set(agreement) - {"1s", "3s", "other"} and agreement != ("any",):
        raise ValueError(f"agreement must be a comma-separated list of 1s, 3s, other, or any; got {cols[3]!r}")
    return Auxiliary(cols[0], cols[1], cols[2], agreement)


def _tagged(tags: set[str]) -> Callable[[list[str]], Tagged]:
    def parse(cols: list[str]) -> Tagged:
        if cols[1] not in tags:
            raise ValueError(f"tag must be one of {sorted(tags)}, got {cols[1]!r}")
        return Tagged(*cols)

    return parse
