"""Word-level tags of the generated tasks: each word's category, from the vocabulary the generator drew it from.

The generator composes sentences from lists of names, places, organisations, numbers,
review items and aspects, positive and negative adjectives, intensifiers and verbs of
liking, so it knows what kind of word each of those is. :data:`TAGS` are those
categories plus closed-class words (``FUNCTION``), punctuation and ``OTHER`` for the rest
of the templates' words: a part-of-speech-like labelling that needs no download. A word
form has one tag wherever it occurs (the first category of :data:`TAGS` that lists it),
as a lexicon-based tagger would give.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import replace

import probekit
from probekit.sources import split_words
from probekit.plugins.source_task.generator import (
    _COMPANIES, _COP_PL, _COP_SG, _COUNTRIES, _CITIES, _DOMAINS, _FIRST_F, _FIRST_M, _INTENS_NEG, _LAST, _MONTHS,
    _NEG_ADJ, _NEG_MILD, _NEG_VERB, _NOT_BAD, _NUM_WORDS, _POS_ADJ, _POS_VERB, _SOFT, _WEEKDAYS,
)

#: The tags, in the order a form listed under two categories is resolved.
TAGS = ("PUNCT", "NUMBER", "FUNCTION", "NAME", "PLACE", "ORG", "TIME", "POS_ADJ", "NEG_ADJ", "INTENSIFIER",
        "ITEM", "ASPECT", "VERB", "OTHER")

_FUNCTION = (
    "a an the this that these those my our your his her its their i we you he she it they me us him them "
    "and or but yet so although though while despite if because as than then when after before until "
    "of in on at to for with by from about into over under through during without between against "
    "is are was were be been being am has have had do does did not no nor can could would should will "
    "shall may might must there here what which who whom whose all some any each every only also "
    "up down out off again once more most much many few less least"
)


_PROPER = ("NAME", "PLACE", "ORG", "TIME")


@functools.cache
def _lexicon() -> dict[str, str]:
    lists = {
        "NAME": (*_FIRST_F, *_FIRST_M, *_LAST),
        "PLACE": (*_CITIES, *_COUNTRIES),
        "ORG": _COMPANIES,
        "TIME": (*_WEEKDAYS, *_MONTHS),
        "NUMBER": _NUM_WORDS,
        "POS_ADJ": _POS_ADJ,
        "NEG_ADJ": (*_NEG_ADJ, *_NEG_MILD, *_NOT_BAD),
        "INTENSIFIER": (*_INTENS_NEG, *_SOFT),
        "ITEM": tuple(item for domain in _DOMAINS for item in domain.items),
        "ASPECT": tuple(aspect for domain in _DOMAINS for aspect in domain.aspects),
        "VERB": (*_POS_VERB, *_NEG_VERB, *_COP_SG, *_COP_PL),
    }
    lexicon = {word: "FUNCTION" for word in _FUNCTION.split()}
    for tag in TAGS:  # earlier tags win
        for phrase in lists.get(tag, ()):
            for word in split_words(phrase):
                # Names are names as written ("Harbor Bank", not "harbor"); other words in any case.
                lexicon.setdefault(word if tag in _PROPER else word.lower(), tag)
    return lexicon


def tag_of(word: str) -> str:
    """The tag of one word form."""
    if re.fullmatch(r"[^\w\s]", word):
        return "PUNCT"
    if re.fullmatch(r"[\d.,]+", word):
        return "NUMBER"
    lexicon = _lexicon()
    return lexicon[word] if word in lexicon else lexicon.get(word.lower(), "OTHER")


def tagged(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The words of ``text`` and their tags."""
    words = split_words(text)
    return words, tuple(tag_of(word) for word in words)


def with_word_tags(examples: Sequence[probekit.Example]) -> list[probekit.Example]:
    """The examples with their words and word tags (single-sentence examples only)."""
    return [replace(example, words=words, word_tags=tags)
            for example in examples for words, tags in [tagged(example.text)]]
