"""Tokenizing examples into batches."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from probekit.data.example import Example
from probekit.metrics.tensors import Batch


def make_batches(
    examples: Sequence[Example],
    tokenizer,
    *,
    batch_size: int,
    max_length: int,
    labels: Sequence[str | int] | None = None,
) -> Iterator[Batch]:
    """Tokenize examples in order, padding each batch to its longest example."""
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
            return_tensors="pt",
        )
        yield Batch(
            input_ids=encoded["input_ids"],
            attention_mask=encoded["attention_mask"],
            special_tokens_mask=encoded["special_tokens_mask"],
            token_type_ids=encoded.get("token_type_ids"),
            labels=None if label_ids is None else torch.tensor([label_ids[e.label] for e in chunk]),
        )


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
            yield from make_batches(chunk, tokenizer, batch_size=len(chunk), max_length=max_length, labels=labels)
            chunk, longest = [], 0
        chunk.append(examples[index])
        longest = max(longest, lengths[index])
    if chunk:
        yield from make_batches(chunk, tokenizer, batch_size=len(chunk), max_length=max_length, labels=labels)
