"""Words and sub-tokens: which tokens of a tokenized sentence belong to which word.

Token-level data (a CoNLL-U file, a built-in task with word tags) gives each sentence's
words; the model's tokenizer splits the text into sub-tokens its own way (WordPiece,
byte-level BPE with or without a prefix space, SentencePiece). Every fast tokenizer of
``transformers`` reports each token's character span in the text (its offsets), so one
rule aligns every family: a word's sub-tokens are the tokens whose characters overlap
it. A leading space or "▁" that a token carries overlaps no word, and a token that
covers only spaces belongs to none.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

#: Words as the built-in tasks split their text: runs of letters and digits (with inner
#: hyphens, apostrophes and decimal points) and single punctuation marks.
WORD_PATTERN = re.compile(r"\w+(?:[-'’.,]\w+)*|[^\w\s]")

#: The first and last token of a word that has none (cut by ``max_length``), and the tag past a sentence's words.
NO_WORD = -1


def split_words(text: str) -> tuple[str, ...]:
    """The words of ``text`` by :data:`WORD_PATTERN`."""
    return tuple(WORD_PATTERN.findall(text))


def word_spans(text: str, words: Sequence[str]) -> list[tuple[int, int]]:
    """Each word's (start, end) characters in ``text``, found in order; ValueError for a word not there."""
    spans, position = [], 0
    for index, word in enumerate(words):
        start = text.find(word, position)
        if not word or start < 0:
            raise ValueError(f"word {index + 1} {word!r} does not occur in the text after character {position}: "
                             f"{text!r}")
        spans.append((start, start + len(word)))
        position = start + len(word)
    return spans


def word_tokens(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[tuple[int, int] | None]:
    """For each word (its character span), the first and last token overlapping it, or None for none.

    A token may overlap two words (SentencePiece can merge "illegible." into one piece):
    it then counts for both, so each word still has its first and last sub-token.
    """
    found: list[tuple[int, int] | None] = [None] * len(spans)
    word = 0
    for position, (start, end) in enumerate(offsets):
        if end <= start:
            continue  # a special token, or padding
        while word < len(spans) and spans[word][1] <= start:
            word += 1
        overlapped = word
        while overlapped < len(spans) and spans[overlapped][0] < end:
            first = found[overlapped]
            found[overlapped] = (position if first is None else first[0], position)
            overlapped += 1
    return found


def word_type_id(word: str) -> int:
    """A stable 63-bit id of a word's form (the same in every process), for per-type control labels."""
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little") >> 1
