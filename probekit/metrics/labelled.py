"""The base of probing metrics: each layer's labelled vectors of both models, split into probe-train and held-out.

A probe is trained, not streamed, so it needs every example's vector at the end: a
:class:`LabelledVectors` metric keeps the per-example kind of state
(:class:`~probekit.metrics.per_example.PerExampleMetric`). Sentence labels (``labels =
"sentence"``) use the vectors probekit stores once per model, pooled by ``tokens`` (cls,
mean or last), counted against ``[run] memory``. Word labels (``labels = "word"``) need a
vector per word, not per example: the metric keeps those itself (float32, taken at each
word's ``word_token`` sub-token), ``datapoints x (L + 1) x hidden x 2 x 4`` bytes, reported
by ``state_bytes``. Beside the vectors: each datapoint's label, word type (for control
tasks), example and side of the split.

The split cannot leak: an example is held out when a hash of its token ids and
``split_seed`` falls below ``test_fraction``, so the same sentence, however often the data
repeats it, is always on the same side.

Intervals: probekit's bootstrap draws example indices (:meth:`finalize_on`); a probe
keeps its probe-train examples as they are and weights the held-out ones by how often
they were drawn, so the replicates resample held-out examples around probes trained once
(their predictions are kept in ``self.trained``).
"""
from __future__ import annotations

import hashlib
import warnings
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from probekit.metrics.base import Metric, MetricContext, MetricError, Row
from probekit.metrics.per_example import PerExampleMetric
from probekit.metrics.tensors import Batch, Capture


@dataclass(frozen=True)
class ProbeOptions:
    """What a probe is trained on; the options every probing metric shares."""

    labels: Literal["sentence", "word"] = "sentence"
    tokens: Literal["cls", "mean", "last"] = "mean"  # a sentence's vector: [CLS], the mean or the last real token
    word_token: Literal["first", "last", "mean"] = "first"  # a word's vector: its first, last or mean sub-token
    test_fraction: float = 0.3
    split_seed: int = 0
    c: float | None = None  # the inverse regularisation strength; None: chosen by cross-validation
    max_iter: int = 1000

    def __post_init__(self):
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction = {self.test_fraction} is not a fraction in (0, 1)")
        if self.c is not None and self.c <= 0:
            raise ValueError(f"c = {self.c} is not a positive inverse regularisation strength")
        if self.max_iter < 1:
            raise ValueError(f"max_iter = {self.max_iter} is not a positive number of iterations")


@dataclass
class LayerData:
    """One layer's datapoints: vectors of a and b (as stored: float64 per example, float32 per word; a probe
    computes in float64), labels, word types, examples, held out, weights.

    ``weights``: 1 for a probe-train datapoint; for a held-out one, how often a bootstrap
    replicate drew its example (1 for the point value).
    """

    x_a: np.ndarray
    x_b: np.ndarray
    y: np.ndarray
    types: np.ndarray
    examples: np.ndarray
    held_out: np.ndarray
    weights: np.ndarray


class LabelledVectors(PerExampleMetric):
    """Collects each layer's labelled datapoints of both models; a subclass turns them into rows with ``rows_of``."""

    Options = ProbeOptions
    #: Trained probes' results by key, shared by the point value and every bootstrap replicate.
    trained: dict[Hashable, Any]
    update_permuted = Metric.update_permuted  # a probe pairs no datapoints of a and b: no permutation null

    def __init__(self, options: Any, context: MetricContext) -> None:
        if options.tokens == "cls" and options.labels == "sentence" and context.causal:
            raise MetricError("tokens = 'cls': decoders have no [CLS] (their first token sees only itself); "
                              "use tokens = 'last' or 'mean'")
        super().__init__(options, context)
        self.words: list[list[torch.Tensor]] = [[] for _ in range(2 * (context.num_layers + 1))]
        self.labels: list[torch.Tensor] = []
        self.types: list[torch.Tensor] = []
        self.example_of: list[torch.Tensor] = []  # each datapoint's example, numbered in the order fed
        self.held_out: list[torch.Tensor] = []
        self.words_cut = 0
        self.trained = {}

    def update(self, a: Capture, b: Capture, batch: Batch) -> None:
        held_out = self._held_out(batch)
        if self.options.labels == "word":
            example, labels, types = self._words(a, b, batch)
            self.words_cut += int(batch.words_cut.sum())
        else:
            if batch.labels is None:
                raise MetricError("labels = 'sentence' needs labelled data: the comparison's data has examples "
                                  "without a label; give every example a label, or probe words (labels = 'word') "
                                  "of token-level data")
            self.vectors_a.add(a, batch)
            self.vectors_b.add(b, batch)
            example, labels, types = torch.arange(batch.size), batch.labels.cpu(), torch.zeros(batch.size, dtype=torch.long)
        self.labels.append(labels)
        self.types.append(types)
        self.example_of.append(example + self.n_examples)
        self.held_out.append(held_out[example])
        self.n_examples += batch.size

    def _held_out(self, batch: Batch) -> torch.Tensor:
        """Whether each example is held out: a hash of its real token ids, keyed by ``split_seed``, below the fraction."""
        held = []
        for row, mask in zip(batch.input_ids.cpu().tolist(), batch.attention_mask.cpu().tolist(), strict=True):
            tokens = np.asarray([t for t, m in zip(row, mask, strict=True) if m], dtype=np.int64).tobytes()
            seeded = hashlib.blake2b(tokens, digest_size=8, key=str(self.options.split_seed).encode()).digest()
            held.append(int.from_bytes(seeded, "little") / 2**64 < self.options.test_fraction)
        return torch.tensor(held)

    def _words(self, a: Capture, b: Capture, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keeps the vectors of every word that kept a token; returns their examples, tags and types."""
        if batch.word_first is None or batch.word_tags is None or batch.word_types is None:
            raise MetricError("labels = 'word' needs token-level data (examples with words and tags): the "
                              "comparison's data is sentence-level; use a conllu source or a task with "
                              "word_tags = true, or probe sentences (labels = 'sentence')")
        example, word = (batch.word_first.cpu() >= 0).nonzero(as_tuple=True)
        layers = self.context.num_layers + 1
        for side, capture in enumerate((a, b)):
            for layer, hidden in enumerate(capture.hidden_states):
                picked = word_vectors(hidden, batch, (example, word), self.options.word_token)
                self.words[side * layers + layer].append(picked.to("cpu", torch.float32))
        return example, batch.word_tags.cpu()[example, word], batch.word_types.cpu()[example, word]

    def layer_data(self, layer: int, drawn: np.ndarray) -> LayerData:
        """The layer's datapoints as arrays, in the order fed; ``drawn``: how often each example was drawn."""
        if self.options.labels == "word":
            layers = self.context.num_layers + 1
            for side in (0, 1):  # one tensor per layer from now on: every replicate reads it without a copy
                kept = self.words[side * layers + layer]
                kept[:] = [torch.cat(kept)] if len(kept) > 1 else kept
            x_a, x_b = (self.words[side * layers + layer][0].numpy() for side in (0, 1))
        else:
            x_a, x_b = self.vectors_a.matrices()[layer].cpu().numpy(), self.vectors_b.matrices()[layer].cpu().numpy()
        examples, held_out = torch.cat(self.example_of).numpy(), torch.cat(self.held_out).numpy()
        return LayerData(x_a, x_b, torch.cat(self.labels).numpy(), torch.cat(self.types).numpy(), examples,
                         held_out, np.where(held_out, drawn[examples], 1))

    @property
    def state_bytes(self) -> int:
        """What the metric keeps itself: the word vectors (the sentence vectors are probekit's store)."""
        return sum(t.numel() * t.element_size() for layer in self.words for t in layer)

    def finalize_on(self, index: torch.Tensor | None) -> list[Row]:
        """The rows with the held-out examples drawn at ``index`` (probe-train ones as they are; None: all once)."""
        if not self.labels:
            raise MetricError("no examples were fed")
        if index is None and self.words_cut:
            warnings.warn(f"{self.words_cut} words lost every sub-token to [run] max_length and were not probed; "
                          "raise max_length to probe them", stacklevel=1)
        drawn = np.ones(self.n_examples, dtype=np.int64) if index is None else \
            np.bincount(index.cpu().numpy(), minlength=self.n_examples)
        return self.rows_of(drawn, replicate=index is not None)

    def rows_of(self, drawn: np.ndarray, replicate: bool) -> list[Row]:
        """One row per layer, held-out examples weighted by ``drawn``; a ``replicate`` needs only the values."""
        raise NotImplementedError


def word_vectors(hidden: torch.Tensor, batch: Batch, rows: tuple[torch.Tensor, torch.Tensor],
                 word_token: str) -> torch.Tensor:
    """The vector of each (example, word) in ``rows``: its first, last or mean sub-token's hidden state."""
    example, word = (r.to(hidden.device) for r in rows)
    first, last = batch.word_first.to(hidden.device)[example, word], batch.word_last.to(hidden.device)[example, word]
    if word_token == "first":
        return hidden[example, first]
    if word_token == "last":
        return hidden[example, last]
    positions = torch.arange(hidden.shape[1], device=hidden.device)
    inside = ((positions >= first.unsqueeze(1)) & (positions <= last.unsqueeze(1))).to(hidden.dtype)  # (words, tokens)
    return torch.einsum("wt,wth->wh", inside / inside.sum(1, keepdim=True), hidden[example])
