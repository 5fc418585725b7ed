"""English-like sentences from a small phrase-structure grammar over the built-in lexicon.

:class:`SentenceGenerator` builds statements (simple, progressive, modal, negated,
copular), yes/no and wh- questions, imperatives, and two clauses joined by a
conjunction. Noun phrases agree with their verbs (``the dog runs``, ``the dogs run``,
``i am``), determiners agree with their nouns (``a cup``, ``an apple``, ``these
cups``, ``some water``), and verbs take an object only when they can. Words are
drawn with a Zipf-like preference for the common ones, as in real text.

Everything comes from one seeded random stream: the same seed and vocabulary give
the same sentences in the same order, on any machine.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from cssl.synth.word_bank import Auxiliary, Determiner, Lexicon, Noun, Pronoun, Tagged, Verb, load_lexicon

T = TypeVar("T")

Phrase = list[str]


@dataclass(frozen=True)
class Sentence:
    """One generated sentence."""

    text: str
    """Lower-case words separated by single spaces: the transcript."""
    spoken: str
    """The same words with commas and a final ``.`` or ``?``: what the synthesiser reads,
    so that clause breaks pause and questions rise."""
    question: bool
    """True for a question."""

    @property
    def words(self) -> list[str]:
        """The words of the transcript."""
        return self.text.split()


class _Pool(Generic[T]):
    """Items drawn with weight ``(rank + offset) ** -exponent``: the most common ones most often.

    Content words use a flat tail (``offset`` 4, ``exponent`` 1) so that rare words still
    appear; closed classes a steep one, as ``the`` outnumbers ``several`` in real text.
    """

    def __init__(self, items: Sequence[T], offset: float = 4.0, exponent: float = 1.0) -> None:
        self.items = list(items)
        self.offset = offset
        self.exponent = exponent
        self._cum = list(itertools.accumulate((rank + offset) ** -exponent for rank in range(len(self.items))))

    def __bool__(self) -> bool:
        return bool(self.items)

    def pick(self, rng: random.Random) -> T:
        """One item; the pool must not be empty."""
        return self.items[bisect.bisect_right(self._cum, rng.random() * self._cum[-1])]

    def where(self, keep: Callable[[T], bool]) -> _Pool[T]:
        """The items that pass ``keep``, ranked in the same order."""
        return _Pool([item for item in self.items if keep(item)], self.offset, self.exponent)


class _NoPhrase(Exception):
    """The limited vocabulary has no word for the phrase being built; another is tried."""


_CLOSED = {"offset": 1.0, "exponent": 1.2}
"""Draw weights of the closed word classes (determiners, pronouns, prepositions...)."""


def _need(pool: _Pool[T], rng: random.Random) -> T:
    if not pool:
        raise _NoPhrase
    return pool.pick(rng)


# Words that begin with a vowel letter but a consonant sound, or the reverse, for a/an.
_CONSONANT_SOUND = ("uni", "use", "usu", "uti", "eu", "one", "once", "ewe")
_VOWEL_SOUND = ("hour", "honest", "honor", "heir")


def _starts_with_vowel_sound(word: str) -> bool:
    if word.startswith(_VOWEL_SOUND):
        return True
    return word[0] in "aeiou" and not word.startswith(_CONSONANT_SOUND)


class SentenceGenerator:
    """Draws :class:`Sentence` objects from a seeded grammar over the (limited) lexicon.

    ``vocab_size`` keeps only the most common words (see :meth:`Lexicon.limit`);
    sentences have ``min_words`` to ``max_words`` words.
    """

    def __init__(
        self,
        seed: int,
        vocab_size: int | None = None,
        lexicon: Lexicon | None = None,
        min_words: int = 4,
        max_words: int = 16,
    ) -> None:
        if not 1 <= min_words <= max_words:
            raise ValueError(f"need 1 <= min_words <= max_words, got {min_words} and {max_words}")
        self.lexicon = (lexicon if lexicon is not None else load_lexicon()).limit(vocab_size)
        self.min_words = min_words
        self.max_words = max_words
        self._rng = random.Random(seed)
        lex = self.lexicon
        self._nouns = _Pool(lex.nouns)
        self._count_nouns = self._nouns.where(lambda n: not n.mass)
        self._verbs = _Pool(lex.verbs)
        self._transitive = self._verbs.where(lambda v: v.transitive)
        self._adjectives = _Pool(lex.adjectives)
        adverbs = _Pool(lex.adverbs)
        self._adverbs = {
            kind: adverbs.where(_has_tag(kind))
            for kind in ("manner", "time", "place", "frequency", "degree", "predicative")
        }
        self._pronouns = _Pool(lex.pronouns, **_CLOSED)
        prepositions = _Pool(lex.prepositions, **_CLOSED)
        self._noun_preps = prepositions.where(lambda p: p.tag in ("noun", "both"))
        self._verb_preps = prepositions.where(lambda p: p.tag in ("verb", "both"))
        self._place_preps = prepositions.where(lambda p: p.tag == "both")
        conjunctions = _Pool(lex.conjunctions, **_CLOSED)
        self._coordinating = conjunctions.where(lambda c: c.tag == "coordinating")
        self._subordinating = conjunctions.where(lambda c: c.tag == "subordinating")
        determiners = _Pool(lex.determiners, **_CLOSED)
        self._determiners = {
            "singular": determiners.where(lambda d: d.singular),
            "plural": determiners.where(lambda d: d.plural),
            "mass": determiners.where(lambda d: d.mass),
        }
        self._auxiliaries = _Pool(lex.auxiliaries, **_CLOSED)
        self._aux_cache: dict[tuple[str, str, str], _Pool[Auxiliary]] = {}
        self._numbers = {int(n.tag): n.form for n in lex.numbers}
        self._question_words = _Pool(lex.question_words, **_CLOSED)
        self._templates: list[tuple[float, Callable[[], tuple[list[Phrase], bool]]]] = [
            (0.36, self._statement),
            (0.12, self._copular_statement),
            (0.16, self._compound),
            (0.09, self._yes_no_question),
            (0.12, self._wh_question),
            (0.07, self._imperative),
            (0.08, self._fronted_adverb_statement),
        ]

    def __iter__(self) -> Iterator[Sentence]:
        while True:
            yield self.sample()

    def __call__(self) -> str:
        """The next sentence's transcript."""
        return self.sample().text

    def take(self, count: int) -> list[Sentence]:
        """The next ``count`` sentences."""
        return [self.sample() for _ in range(count)]

    def sample(self) -> Sentence:
        """The next sentence: a template is drawn, then redrawn until the length fits."""
        weights = [w for w, _ in self._templates]
        for _ in range(1000):
            (build,) = self._rng.choices([b for _, b in self._templates], weights=weights)
            try:
                clauses, question = build()
            except _NoPhrase:
                continue
            words = [w for clause in clauses for w in clause]
            if self.min_words <= len(words) <= self.max_words:
                return _render(clauses, question)
        raise RuntimeError(
            f"cannot build a sentence of {self.min_words}-{self.max_words} words from this vocabulary; "
            "use a larger vocab_size or a wider length range"
        )

    # Templates: each returns its clauses (one pause between each) and whether it asks.

    def _statement(self) -> tuple[list[Phrase], bool]:
        return [self._clause()], False

    def _copular_statement(self) -> tuple[list[Phrase], bool]:
        subject, agreement = self._subject()
        tense = self._tense()
        return [subject + self._copula_rest(agreement, tense, negate=self._chance(0.15))], False

    def _fronted_adverb_statement(self) -> tuple[list[Phrase], bool]:
        adverb = _need(self._adverbs["time"], self._rng).form
        return [[adverb] + self._clause(adjuncts=False)], False

    def _compound(self) -> tuple[list[Phrase], bool]:
        rng = self._rng
        if self._subordinating and (not self._coordinating or self._chance(0.5)):
            conjunction = self._subordinating.pick(rng).form
            first, second = self._clause(adjuncts=False), self._clause(adjuncts=False)
            if self._chance(0.4):  # "when it rains, the dog sleeps"
                return [[conjunction] + first, second], False
            return [first, [conjunction] + second], False
        conjunction = _need(self._coordinating, rng).form
        return [self._clause(adjuncts=False), [conjunction] + self._clause(adjuncts=False)], False

    def _imperative(self) -> tuple[list[Phrase], bool]:
        verb = _need(self._verbs, self._rng)
        words = [verb.base] + self._complements(verb)
        if self._chance(0.25):
            words = [self._aux("do_not", "present", "other")] + words
        return [words], False

    def _yes_no_question(self) -> tuple[list[Phrase], bool]:
        subject, agreement = self._subject()
        tense = self._tense()
        kind = self._rng.choice(("do", "be", "modal"))
        if kind == "be":
            rest = self._copula_rest(agreement, tense, negate=False)
            return [[rest[0]] + subject + rest[1:]], True  # "is the dog happy"
        verb = _need(self._verbs, self._rng)
        aux = self._aux("modal", "any", "other") if kind == "modal" else self._aux("do", tense, agreement)
        return [[aux] + subject + [verb.base] + self._complements(verb)], True

    def _wh_question(self) -> tuple[list[Phrase], bool]:
        rng = self._rng
        word = _need(self._question_words, rng)
        tense = self._tense()
        if word.tag == "subject":  # "who saw the dog"
            verb = _need(self._verbs, rng)
            return [[word.form, self._finite(verb, "3s", tense)] + self._complements(verb)], True
        if word.tag == "adjunct" and self._chance(0.3):  # "why is the man angry"
            subject, agreement = self._subject()
            rest = self._copula_rest(agreement, tense, negate=False, place=False)
            return [[word.form, rest[0]] + subject + rest[1:]], True
        head = [word.form]
        if word.tag == "determiner":  # "which book did she read"
            noun = _need(self._count_nouns, rng)
            head.append(noun.plural if self._chance(0.3) and noun.plural else noun.singular)
        subject, agreement = self._subject()
        aux = self._aux("do", tense, agreement)
        if word.tag == "adjunct":  # "where does he live"
            verb = _need(self._verbs, rng)
            return [head + [aux] + subject + [verb.base] + self._complements(verb, adjuncts=False)], True
        verb = _need(self._transitive, rng)  # the question word is the object: "what did she eat"
        tail = self._prepositional(self._verb_preps) if self._chance(0.2) else []
        return [head + [aux] + subject + [verb.base] + tail], True

    # Clauses and phrases.

    def _clause(self, adjuncts: bool = True) -> Phrase:
        """A statement clause: subject, then a simple, progressive, modal or negated predicate."""
        subject, agreement = self._subject()
        verb = _need(self._verbs, self._rng)
        tense = self._tense()
        form = self._rng.choices(("simple", "progressive", "modal", "negated"), weights=(0.55, 0.15, 0.15, 0.15))[0]
        if form == "simple":
            head = [self._finite(verb, agreement, tense)]
            if self._adverbs["frequency"] and self._chance(0.12):
                head = [self._adverbs["frequency"].pick(self._rng).form] + head
        elif form == "progressive":
            head = [self._aux("be", tense, agreement), verb.gerund]
        elif form == "modal":
            kind = "modal_not" if self._chance(0.2) else "modal"
            head = [self._aux(kind, "any", agreement), verb.base]
        else:
            head = [self._aux("do_not", tense, agreement), verb.base]
        return subject + head + self._complements(verb, adjuncts=adjuncts)

    def _complements(self, verb: Verb, adjuncts: bool = True) -> Phrase:
        """Object (when the verb takes one), then optional place phrase and adverbs."""
        words: Phrase = []
        if verb.transitive and (not verb.intransitive or self._chance(0.5)):
            words += self._noun_phrase(subject=False)[0]
        if not adjuncts:
            return words
        if self._chance(0.3):
            words += self._prepositional(self._verb_preps)
        if self._chance(0.12):
            words.append(_need(self._adverbs["manner"], self._rng).form)
        if self._chance(0.12):
            kind = self._rng.choice(("time", "place"))
            words.append(_need(self._adverbs[kind], self._rng).form)
        return words

    def _copula_rest(self, agreement: str, tense: str, negate: bool, place: bool = True) -> Phrase:
        """``is [not] [very] happy`` or ``was under the table``: be first, then the rest."""
        be = self._aux("be_not" if negate else "be", tense, agreement)
        if place and self._chance(0.25):
            return [be] + self._prepositional(self._place_preps)
        words = [be]
        if self._chance(0.25):
            kind = "predicative" if self._chance(0.3) else "degree"
            words.append(_need(self._adverbs[kind], self._rng).form)
        words.append(_need(self._adjectives, self._rng))
        return words

    def _subject(self) -> tuple[Phrase, str]:
        return self._noun_phrase(subject=True)

    def _noun_phrase(self, subject: bool, depth: int = 0) -> tuple[Phrase, str]:
        """A pronoun, a counted noun or a determined noun with adjectives; and its agreement."""
        rng = self._rng
        roll = rng.random()
        if self._pronouns and roll < (0.3 if subject else 0.12) and depth == 0:
            pronoun: Pronoun = self._pronouns.pick(rng)
            return [pronoun.subject if subject else pronoun.object], pronoun.agreement
        noun: Noun = _need(self._nouns, rng)
        plural = noun.plural is not None and self._chance(0.3)
        word = noun.plural if plural and noun.plural is not None else noun.singular
        if plural and roll > 0.93 and depth == 0:
            return self._number_words() + [word], "other"
        words = self._adjective_words() + [word]
        determiner = self._determiner(noun.mass, plural)
        if determiner is None:
            # Plural and mass nouns may stand alone ("dogs bark"); a singular count noun may not.
            if not (plural or noun.mass):
                raise _NoPhrase
        else:
            form = determiner.form
            if determiner.vowel_form and _starts_with_vowel_sound(words[0]):
                form = determiner.vowel_form
            words = [form] + words
        if depth == 0 and self._chance(0.12):
            words += self._prepositional(self._noun_preps, depth + 1)
        return words, "other" if plural else "3s"

    def _determiner(self, mass: bool, plural: bool) -> Determiner | None:
        """A determiner that fits the noun, or None (bare noun) now and then or when none fits."""
        fits = self._determiners["mass" if mass else "plural" if plural else "singular"]
        if not fits or ((plural or mass) and self._chance(0.15)):
            return None
        return fits.pick(self._rng)

    def _adjective_words(self) -> Phrase:
        rng = self._rng
        count = rng.choices((0, 1, 2), weights=(0.62, 0.3, 0.08))[0]
        if not self._adjectives or count == 0:
            return []
        words = [self._adjectives.pick(rng) for _ in range(count)]
        if len(set(words)) < len(words):
            words = words[:1]
        if self._adverbs["degree"] and self._chance(0.12):
            words = [self._adverbs["degree"].pick(rng).form] + words
        return words

    def _number_words(self) -> Phrase:
        """A number above one: ``three``, ``twenty five``, ``two hundred``."""
        values = self._numbers
        small = [v for v in values if 2 <= v <= 19]
        tens = [v for v in values if v in range(20, 100, 10)]
        units = [v for v in values if 1 <= v <= 9]
        large = [v for v in values if v >= 100]
        options: list[Callable[[], Phrase]] = []
        if small:
            options += [lambda: [values[self._rng.choice(small)]]] * 3
        if tens:
            options.append(lambda: [values[self._rng.choice(tens)]])
            if units:
                options.append(lambda: [values[self._rng.choice(tens)], values[self._rng.choice(units)]])
        if large and units:
            options.append(lambda: [values[self._rng.choice(units)], values[self._rng.choice(large)]])
        if not options:
            raise _NoPhrase
        return self._rng.choice(options)()

    def _prepositional(self, prepositions: _Pool[Tagged], depth: int = 1) -> Phrase:
        preposition = _need(prepositions, self._rng)
        return [preposition.form] + self._noun_phrase(subject=False, depth=depth)[0]

    def _finite(self, verb: Verb, agreement: str, tense: str) -> str:
        if tense == "past":
            return verb.past
        return verb.third if agreement == "3s" else verb.base

    def _aux(self, kind: str, tense: str, agreement: str) -> str:
        """A form of be or do, or a modal, that fits tense and subject."""
        key = (kind, tense, agreement)
        if key not in self._aux_cache:
            self._aux_cache[key] = self._auxiliaries.where(
                lambda a: a.kind == kind and (tense == "any" or a.tense in (tense, "any")) and a.agrees(agreement)
            )
        return _need(self._aux_cache[key], self._rng).form

    def _tense(self) -> str:
        return "past" if self._chance(0.45) else "present"

    def _chance(self, p: float) -> bool:
        return self._rng.random() < p


def _has_tag(tag: str) -> Callable[[Tagged], bool]:
    return lambda word: word.tag == tag


def _render(clauses: list[Phrase], question: bool) -> Sentence:
    text = " ".join(w for clause in clauses for w in clause)
    spoken = ", ".join(" ".join(clause) for clause in clauses) + ("?" if question else ".")
    return Sentence(text, spoken, question)
