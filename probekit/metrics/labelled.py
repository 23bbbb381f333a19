"""The base of probing metrics: each layer's labelled vectors of both models, split into probe-train and held-out.

A probe needs every example's vector at the end (it is trained, not streamed), so a
:class:`LabelledVectors` metric keeps them: per layer and model, one float32 vector per
sentence (``labels = "sentence"``, pooled by ``pooling``) or per word (``labels = "word"``,
taken at the word's ``word_token`` sub-token), with its label, its word type (for control
tasks) and its sentence. That is ``datapoints x (L + 1) x hidden x 2 x 4`` bytes, counted
in ``state_bytes``.

The split cannot leak: a sentence is held out when a hash of its token ids and
``split_seed`` falls below ``test_fraction``, so the same sentence, however often the data
repeats it, is always on the same side.

Intervals: :meth:`pooled` keeps the probe-train examples as they are and weights only the
held-out ones, so probekit's bootstrap (``[run] bootstrap``) resamples held-out examples
around probes trained once; the trained probes' predictions are shared by every
replicate (``_PredictionCache``).
"""
from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from probekit.metrics.base import Metric, MetricContext, MetricError
from probekit.metrics.functional import datapoints
from probekit.metrics.tensors import Batch, Capture


@dataclass(frozen=True)
class ProbeOptions:
    """What a probe is trained on; the options every probing metric shares."""

    labels: Literal["sentence", "word"] = "sentence"
    pooling: Literal["cls", "mean", "last"] = "mean"  # a sentence's vector
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
    """One layer's probing data as arrays: vectors of a and b (float64), labels, word types, sentences, held out."""

    x_a: np.ndarray
    x_b: np.ndarray
    y: np.ndarray
    types: np.ndarray
    sentences: np.ndarray
    held_out: np.ndarray
    weights: np.ndarray  # per datapoint: 1 for probe-train, the bootstrap weight of its group when held out


class LabelledVectors(Metric):
    """Collects each layer's labelled vectors of both models; a subclass turns them into rows in ``finalize``."""

    needs = frozenset({"hidden_states"})
    layers = "hidden_states"
    Options = ProbeOptions

    def __init__(self, options: Any, context: MetricContext) -> None:
        super().__init__(options, context)
        if options.pooling == "cls" and options.labels == "sentence" and context.causal:
            raise MetricError("pooling = 'cls': decoders have no [CLS] (their first token sees only itself); "
                              "use pooling = 'last' or 'mean'")
        layers = context.num_layers + 1
        self.vectors: dict[str, list[list[torch.Tensor]]] = {"a": [[] for _ in range(layers)],
                                                              "b": [[] for _ in range(layers)]}
        self.labels: list[torch.Tensor] = []
        self.types: list[torch.Tensor] = []
        self.sentences: list[torch.Tensor] = []
        self.held_out: list[torch.Tensor] = []
        self.n_examples = 0
        self.words_cut = 0
        self.group_weights: np.ndarray | None = None  # set by pooled: each datapoint's group's bootstrap weight
        self.replicate = False  # a bootstrap replicate: only the value is wanted
        self.cache = _PredictionCache()

    def update(self, a: Capture, b: Capture, batch: Batch) -> None:
        sentence_ids, held_out = self._sentences(batch)
        if self.options.labels == "word":
            rows, labels, types = self._words(batch)
            self.words_cut += int(batch.words_cut.sum())
        else:
            if batch.labels is None:
                raise MetricError("labels = 'sentence' needs labelled data: the comparison's data has examples "
                                  "without a label; give every example a label, or probe words (labels = 'word') "
                                  "of token-level data")
            rows, labels, types = None, batch.labels.cpu(), torch.zeros(batch.size, dtype=torch.long)
        example = torch.arange(batch.size) if rows is None else rows[0]
        for side, capture in (("a", a), ("b", b)):
            for layer, store in enumerate(self.vectors[side]):
                hidden = capture.hidden_states[layer]
                store.append(self._pick(hidden, batch, rows).to("cpu", torch.float32))
        self.labels.append(labels)
        self.types.append(types)
        self.sentences.append(sentence_ids[example])
        self.held_out.append(held_out[example])
        self.n_examples += batch.size

    def _sentences(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Each example's id (a hash of its real token ids) and whether it is held out (a seeded hash below the fraction)."""
        ids, held = [], []
        for row, mask in zip(batch.input_ids.cpu().tolist(), batch.attention_mask.cpu().tolist(), strict=True):
            tokens = np.asarray([t for t, m in zip(row, mask, strict=True) if m], dtype=np.int64).tobytes()
            ids.append(int.from_bytes(hashlib.blake2b(tokens, digest_size=8).digest(), "little") >> 1)
            seeded = hashlib.blake2b(tokens, digest_size=8, key=str(self.options.split_seed).encode()).digest()
            held.append(int.from_bytes(seeded, "little") / 2**64 < self.options.test_fraction)
        return torch.tensor(ids, dtype=torch.long), torch.tensor(held)

    def _words(self, batch: Batch) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor]:
        """(example, word) of every word that kept a token, with its tag and type."""
        if batch.word_first is None or batch.word_tags is None or batch.word_types is None:
            raise MetricError("labels = 'word' needs token-level data (examples with words and tags): the "
                              "comparison's data is sentence-level; use a conllu source or a task with "
                              "word_tags = true, or probe sentences (labels = 'sentence')")
        example, word = (batch.word_first.cpu() >= 0).nonzero(as_tuple=True)
        return (example, word), batch.word_tags.cpu()[example, word], batch.word_types.cpu()[example, word]

    def _pick(self, hidden: torch.Tensor, batch: Batch, rows) -> torch.Tensor:
        if rows is None:
            return datapoints(hidden, batch.attention_mask, self.options.pooling)
        return word_vectors(hidden, batch, rows, self.options.word_token)

    def layer_data(self, layer: int) -> LayerData:
        """The layer's datapoints as float64 arrays, in the order they were fed."""
        held_out = torch.cat(self.held_out).numpy()
        weights = np.where(held_out, 1 if self.group_weights is None else self.group_weights, 1)
        return LayerData(torch.cat(self.vectors["a"][layer]).double().numpy(),
                         torch.cat(self.vectors["b"][layer]).double().numpy(),
                         torch.cat(self.labels).numpy(), torch.cat(self.types).numpy(),
                         torch.cat(self.sentences).numpy(), held_out, weights)

    @property
    def state_bytes(self) -> int:
        """What the kept vectors take."""
        return sum(t.numel() * t.element_size() for side in self.vectors.values() for layer in side for t in layer)

    @classmethod
    def pooled(cls, parts: Sequence[Metric], weights: Sequence[int]) -> Metric:
        """All parts' datapoints; held-out ones weighted by their part's weight, probe-train ones kept once."""
        first = parts[0]
        assert isinstance(first, LabelledVectors)
        metric = copy.copy(first)
        metric.vectors = {side: [[t for p in parts for t in p.vectors[side][layer]] for layer in range(len(layers))]
                          for side, layers in first.vectors.items()}
        for name in ("labels", "types", "sentences", "held_out"):
            setattr(metric, name, [t for p in parts for t in getattr(p, name)])
        metric.group_weights = np.concatenate([np.full(sum(len(t) for t in p.labels), w)
                                               for p, w in zip(parts, weights, strict=True)])
        metric.n_examples = sum(p.n_examples for p in parts)
        metric.words_cut = sum(p.words_cut for p in parts)
        metric.replicate = any(w != 1 for w in weights)
        return metric


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


class _PredictionCache(dict):
    """Trained probes' results by (layer, model, seed, task): one training serves the point and every replicate."""
