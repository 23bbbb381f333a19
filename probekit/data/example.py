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
    """

    text: str
    text_pair: str | None
    label: str | int | None


def label_names(examples: Sequence[Example]) -> tuple[str | int, ...]:
    """The classes of a labelled dataset, sorted: their positions are the label ids (unlabelled examples have none)."""
    return tuple(sorted({e.label for e in examples if e.label is not None}, key=lambda label: (str(type(label)), label)))
