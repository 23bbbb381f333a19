"""One labelled example, as every data source yields them."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One example. ``text_pair`` is None for single-sentence tasks.

    ``label`` is the raw label as the source spells it (a class name or a number), None for
    unlabelled text (a ``.txt`` file: probing data, or what a language model fine-tunes on);
    label ids are assigned from the data itself (sorted distinct labels), never guessed.

    ``words`` and ``word_tags`` are set by sources of token-level data (CoNLL-U files, the
    built-in tasks with ``word_tags = true``): the sentence's words in order, each occurring
    verbatim in ``text``, and one tag per word (a part of speech, say); None otherwise.
    """

    text: str
    text_pair: str | None
    label: str | int | None
    words: tuple[str, ...] | None = None
    word_tags: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if (self.words is None) != (self.word_tags is None) or (
                self.words is not None and len(self.words) != len(self.word_tags or ())):
            raise ValueError(f"an example needs one tag per word: {self.words!r} tagged {self.word_tags!r}")
        if self.words is not None and self.text_pair is not None:
            raise ValueError("word tags are for single sentences: an example with words has no text_pair")


def label_names(examples: Sequence[Example]) -> tuple[str | int, ...]:
    """The classes of a labelled dataset, sorted: their positions are the label ids (unlabelled examples have none)."""
    return tuple(sorted({e.label for e in examples if e.label is not None}, key=lambda label: (str(type(label)), label)))


def tag_names(examples: Sequence[Example]) -> tuple[str, ...]:
    """The word tags of a token-level dataset, sorted: their positions are the tag ids."""
    return tuple(sorted({tag for e in examples for tag in e.word_tags or ()}))
