"""Tokenizing examples into batches."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from probekit.data.example import Example
from probekit.data.words import NO_WORD, word_spans, word_tokens, word_type_id
from probekit.errors import DataError
from probekit.metrics.tensors import Batch


def make_batches(
    examples: Sequence[Example],
    tokenizer,
    *,
    batch_size: int,
    max_length: int,
    labels: Sequence[str | int] | None = None,
    tags: Sequence[str] | None = None,
) -> Iterator[Batch]:
    """Tokenize examples in order, padding each batch to its longest example.

    With ``labels`` (the dataset's label names) the batch carries label ids; with ``tags``
    (its word tags, :func:`~probekit.data.example.tag_names`) examples with words carry their
    word alignment (:class:`~probekit.metrics.tensors.Batch`).
    """
    label_ids = {label: i for i, label in enumerate(labels)} if labels is not None else None
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        pairs = [e.text_pair for e in chunk]
        encoded = tokenizer(
            [e.text for e in chunk],
            pairs if all(p is not None for p in pairs) else None,
            padding=True,
            truncation=True,
            max_length=max_length,
            return_special_tokens_mask=True,
            return_offsets_mapping=tags is not None,
            return_tensors="pt",
        )
        truncated = (encoded["attention_mask"].sum(dim=1) >= max_length).tolist()
        words = {} if tags is None else _word_alignment(chunk, encoded["offset_mapping"].tolist(), truncated, tags)
        yield Batch(
            input_ids=encoded["input_ids"],
            attention_mask=encoded["attention_mask"],
            special_tokens_mask=encoded["special_tokens_mask"],
            token_type_ids=encoded.get("token_type_ids"),
            labels=None if label_ids is None else torch.tensor([label_ids[e.label] for e in chunk]),
            **words,
        )


def _word_alignment(chunk: Sequence[Example], offsets: list, truncated: list[bool],
                    tags: Sequence[str]) -> dict[str, torch.Tensor]:
    """The Batch's word fields of a chunk of examples with words (offsets: per example, per token).

    A word with no token is cut when its example reached ``max_length`` and the word starts
    after the last kept token; anywhere else the tokenizer dropped it, which is bad data.
    """
    tag_ids = {tag: i for i, tag in enumerate(tags)}
    shape = (len(chunk), max(len(e.words or ()) for e in chunk))
    fields = {name: torch.full(shape, NO_WORD, dtype=torch.long)
              for name in ("word_first", "word_last", "word_tags", "word_types")}
    words_cut = torch.zeros(len(chunk), dtype=torch.long)
    for row, (example, token_spans, cut_short) in enumerate(zip(chunk, offsets, truncated, strict=True)):
        if example.words is None or example.word_tags is None:
            continue
        spans = word_spans(example.text, example.words)
        found = word_tokens([tuple(span) for span in token_spans], spans)
        last_end = max((end for _, end in token_spans), default=0)
        for index, (word, tokens) in enumerate(zip(example.words, found, strict=True)):
            if tokens is not None:
                fields["word_first"][row, index], fields["word_last"][row, index] = tokens
            elif cut_short and spans[index][0] >= last_end:
                words_cut[row] += 1
            else:
                raise DataError(f"the word {word!r} (word {index + 1} of {example.text!r}) maps to no sub-token: "
                                "the tokenizer drops it (a control or zero-width character?); remove the word "
                                "from the data or replace it with visible text")
        n = len(example.words)
        fields["word_tags"][row, :n] = torch.tensor([tag_ids[tag] for tag in example.word_tags])
        fields["word_types"][row, :n] = torch.tensor([word_type_id(word) for word in example.words])
    return {**fields, "words_cut": words_cut}


def token_lengths(examples: Sequence[Example], tokenizer, max_length: int, chunk: int = 1024) -> list[int]:
    """Each example's number of tokens, special tokens included, after truncation.

    Tokenized ``chunk`` examples at a time and only the ids kept, so the memory
    this takes does not grow with the dataset beyond one int per example.
    """
    lengths: list[int] = []
    for start in range(0, len(examples), chunk):
        part = examples[start : start + chunk]
        pairs = [e.text_pair for e in part]
        encoded = tokenizer([e.text for e in part], pairs if all(p is not None for p in pairs) else None,
                            truncation=True, max_length=max_length, return_attention_mask=False,
                            return_token_type_ids=False)
        lengths.extend(len(ids) for ids in encoded["input_ids"])
    return lengths


def length_sorted_batches(
    examples: Sequence[Example],
    tokenizer,
    *,
    batch_tokens: int,
    max_length: int,
    labels: Sequence[str | int] | None = None,
    tags: Sequence[str] | None = None,
) -> Iterator[Batch]:
    """Batches of examples of similar length, each at most ``batch_tokens`` padded tokens.

    Real sentences vary from a few tokens to dozens; batching them by length instead
    of by position removes most of the padding a forward pass would compute. The
    streamed metrics do not depend on the order of the examples.
    """
    lengths = token_lengths(examples, tokenizer, max_length)
    chunk: list[Example] = []
    longest = 0
    for index in sorted(range(len(examples)), key=lengths.__getitem__):
        if chunk and (len(chunk) + 1) * max(longest, lengths[index]) > batch_tokens:
            yield from make_batches(chunk, tokenizer, batch_size=len(chunk), max_length=max_length, labels=labels,
                                  tags=tags)
            chunk, longest = [], 0
        chunk.append(examples[index])
        longest = max(longest, lengths[index])
    if chunk:
        yield from make_batches(chunk, tokenizer, batch_size=len(chunk), max_length=max_length, labels=labels,
                                  tags=tags)
