"""Evaluation and training data: built-in tasks, local files, GLUE and HF datasets, mixes."""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from probekit.spec import DataSpec, Spec


@dataclass(frozen=True)
class Example:
    """One labelled example. ``text_pair`` is None for single-sentence tasks.

    ``label`` is the raw label as the source spells it (a class name or a number);
    label ids are assigned from the data itself (sorted distinct labels), never guessed.
    """

    text: str
    text_pair: str | None
    label: str | int


class DataError(ValueError):
    """Data that cannot be read as declared: the message names the source and the fix."""


@dataclass(frozen=True)
class Batch:
    """A tokenized batch. Masks are (batch, tokens) with 1 for real / special tokens."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    special_tokens_mask: torch.Tensor
    token_type_ids: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    def model_inputs(self) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = self.token_type_ids
        return inputs

    def to(self, device: torch.device | str) -> Batch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(*(move(getattr(self, f.name)) for f in fields(self)))


def label_names(examples: Sequence[Example]) -> tuple[str | int, ...]:
    """The classes of a labelled dataset, sorted: their positions are the label ids."""
    return tuple(sorted({e.label for e in examples}, key=lambda label: (str(type(label)), label)))


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


def load_examples(spec: Spec, name: str) -> list[Example]:
    """The examples of ``[data.<name>]``: read, shuffled when it has a ``seed``, capped at ``limit``."""
    data = spec.data[name]
    where = f"{spec.path}: data.{name}"
    if data.kind == "mix":
        examples = []
        for part, count in data.mix:
            available = load_examples(spec, part)
            if count is not None and count > len(available):
                raise DataError(f"{where}.mix: asks for {count} examples of {part!r}, which has {len(available)}")
            examples.extend(available[:count])
    else:
        examples = _read_source(data, where)
    if data.seed is not None:
        order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(data.seed)).tolist()
        examples = [examples[i] for i in order]
    return examples[: data.limit]


def _read_source(data: DataSpec, where: str) -> list[Example]:
    try:
        if data.kind == "task":
            from probekit.tasks import load_task

            return load_task(data.source, data.split)
        if data.kind == "glue":
            from probekit.glue import load_glue

            return load_glue(data.source, data.split, data.glue_dir)
        if data.kind == "path":
            return _rows_to_examples(_read_table_file(Path(data.source)), data, f"{where} ({data.source})")
        return _read_hf(data, where)
    except (OSError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(f"{where}: {error}") from error


def _read_table_file(path: Path) -> tuple[list[str], list[dict]]:
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
            return list(reader.fieldnames or []), list(reader)
    if suffix in (".jsonl", ".json"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return sorted({key for row in rows for key in row}), rows
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return table.column_names, table.to_pylist()
    raise DataError(f"{path}: unknown file type {suffix!r}; expected .csv, .tsv, .jsonl or .parquet")


def _rows_to_examples(read: tuple[list[str], list[dict]], data: DataSpec, where: str, names=None) -> list[Example]:
    columns, rows = read
    wanted = {"text": data.text, "text_pair": data.text_pair, "label": data.label}
    missing = [f"{key} = {column!r}" for key, column in wanted.items() if column is not None and column not in columns]
    if missing:
        raise DataError(f"{where}: no column for {', '.join(missing)}; the columns are: {', '.join(map(str, columns))}")
    return [
        Example(
            text=str(row[data.text]),
            text_pair=None if data.text_pair is None else str(row[data.text_pair]),
            label=names[row[data.label]] if names else row[data.label],
        )
        for row in rows
    ]


def _read_hf(data: DataSpec, where: str) -> list[Example]:
    import datasets

    dataset = datasets.load_dataset(data.source, data.config, split=data.split)
    feature = dataset.features.get(data.label)
    names = getattr(feature, "names", None)
    return _rows_to_examples((dataset.column_names, dataset), data, where, names)
