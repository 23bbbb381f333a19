"""The examples a spec's ``[data.<name>]`` tables name, read once per run through their data sources."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import torch

from probekit.data.example import Example
from probekit.data.source import DataSource
from probekit.errors import DataError
from probekit.spec.model import DataSpec, Spec

#: At most this many validation examples score a fine-tune whose spec names no validation data.
COUNTERPART_LIMIT = 1000


class ExampleStore:
    """Examples by data name, read on first use: shuffled when a table has a ``seed``, capped at ``limit``."""

    def __init__(self, spec: Spec, sources: Mapping[str, DataSource],
                 warn: Callable[[str], None] = lambda message: None) -> None:
        self.spec = spec
        self.sources = sources
        self.warn = warn  # told once per data name, e.g. of a `limit` larger than the data
        self.data: dict[str, DataSpec] = dict(spec.data)
        self._examples: dict[str, list[Example]] = {}

    def __getitem__(self, name: str) -> list[Example]:
        if name not in self._examples:
            examples = self._read(name)
            if not examples:
                raise DataError(f"{self.where(name)}: has no examples")
            self._examples[name] = examples
        return self._examples[name]

    def where(self, name: str) -> str:
        return f"{self.spec.path}: data.{name.partition(':')[0]}"

    def fingerprint(self, name: str) -> str:
        data = self.data[name]
        if data.kind == "mix":
            return "mix(" + ",".join(f"{part}:{count}:{self.fingerprint(part)}" for part, count in data.mix) + ")"
        return f"{data.kind}:{self.sources[data.kind].fingerprint(data.options)}"

    def validation_counterpart(self, train_name: str) -> str | None:
        """The name of the validation data matching ``train_name``'s source, added on demand; None if it has none."""
        train = self.data[train_name]
        if train.kind == "mix":
            return None
        options = self.sources[train.kind].validation_split(train.options)
        if options is None:
            return None
        name = f"{train_name}:validation"
        self.data[name] = replace(train, name=name, options=options, limit=COUNTERPART_LIMIT, seed=None)
        return name

    def _read(self, name: str) -> list[Example]:
        data = self.data[name]
        if data.kind == "mix":
            examples = []
            for part, count in data.mix:
                available = self[part]
                if count is not None and count > len(available):
                    raise DataError(f"{self.where(name)}.mix: asks for {count} examples of {part!r}, which has {len(available)}")
                examples.extend(available[:count])
        else:
            examples = list(self.sources[data.kind].load(data.options, self.where(name)))
        if data.seed is not None:
            order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(data.seed)).tolist()
            examples = [examples[i] for i in order]
        if data.limit is not None and data.limit > len(examples) and name in self.spec.data:
            self.warn(f"{self.where(name)}.limit: limit = {data.limit} but the data has {len(examples)} examples; "
                      f"using all {len(examples)}")
        return examples[: data.limit]
