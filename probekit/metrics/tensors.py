"""The tensors a metric receives: a tokenized batch and what each model computed on it."""
from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

#: Bytes the attention statistics hold per (example x head x query row x key) of a chunk: the
#: float32 probabilities of both models and the float64 temporaries of p log p and of their mixture.
ROW_BYTES = 32


@dataclass(frozen=True)
class Batch:
    """A tokenized batch.

    ``input_ids``, ``attention_mask`` (1 = real token), ``special_tokens_mask``
    (1 = [CLS]/[SEP]/...), ``token_type_ids``: (batch, tokens); ``labels``: (batch,), the
    label ids of labelled data.

    Token-level data (examples with words) also has, each (batch, words) and -1 past an
    example's last word: ``word_first`` and ``word_last``, the positions of the first and
    last token of each word (-1 for a word ``max_length`` cut off), ``word_tags``, each
    word's tag id, and ``word_types``, a stable id of its form; and ``words_cut``: (batch,),
    how many of the example's words lost every token to ``max_length``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    special_tokens_mask: torch.Tensor
    token_type_ids: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    word_first: torch.Tensor | None = None
    word_last: torch.Tensor | None = None
    word_tags: torch.Tensor | None = None
    word_types: torch.Tensor | None = None
    words_cut: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    def model_inputs(self) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = self.token_type_ids
        return inputs

    def rows(self, start: int, stop: int) -> Batch:
        """Examples ``start:stop`` of the batch (a micro-batch), with the batch's padding."""
        return Batch(*(None if (t := getattr(self, f.name)) is None else t[start:stop] for f in fields(self)))

    def select(self, index: torch.Tensor) -> Batch:
        """The examples at ``index`` (a 1-D tensor of positions), with the batch's padding."""
        return Batch(*(None if (t := getattr(self, f.name)) is None else t[index] for f in fields(self)))

    def to(self, device: torch.device | str) -> Batch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(*(move(getattr(self, f.name)) for f in fields(self)))


@dataclass(frozen=True)
class AttentionMaps:
    """One layer's attention probabilities as eager attention returned them: (batch, heads, query, key)."""

    maps: torch.Tensor
    #: Query rows per step of :meth:`spans` (all of them: the maps are in memory already).
    chunk: int | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.maps.shape)

    def probabilities(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of every example's and head's map: (batch, heads, stop - start, key)."""
        return self.maps[:, :, start:stop]

    def spans(self) -> Iterator[tuple[int, int]]:
        return _spans(self.shape[2], self.chunk)

    def select(self, index: torch.Tensor) -> AttentionMaps:
        return replace(self, maps=self.maps[index])


@dataclass(frozen=True)
class AttentionInputs:
    """One layer's attention as the model computes it, kept without its maps (the forward ran with SDPA).

    ``query`` (batch, heads, query, d) and ``key`` (batch, key_heads, key, d) are what
    the model's attention function received: after rotary embeddings, before grouped-query
    heads are expanded (head h reads key head h // (heads / key_heads), as transformers'
    ``repeat_kv`` expands them). ``mask`` (batch, 1, query, key) is the model's own mask
    (True = attended: causal, padding, sliding window), ``scaling`` multiplies the scores
    and ``softcap``, when set, caps them at +-softcap through tanh (Gemma-2 style). A
    metric reads the probabilities ``chunk`` query rows at a time, so it holds
    O(chunk x key) per head and never a whole map.
    """

    query: torch.Tensor
    key: torch.Tensor
    mask: torch.Tensor
    scaling: float
    softcap: float | None = None
    chunk: int | None = None  # query rows per step of :meth:`spans`; None: all

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """The shape the layer's maps would have: (batch, heads, query, key)."""
        return (self.query.shape[0], self.query.shape[1], self.query.shape[2], self.key.shape[2])

    def probabilities(self, start: int, stop: int) -> torch.Tensor:
        """Rows ``start:stop`` of the maps, float32, computed as eager attention computes them.

        softmax(q k^T x scaling [soft-capped] + mask) with the product in the model's dtype
        and the softmax in float32; masked scores get the dtype's minimum added, as eager
        attention adds its float mask.
        """
        batch, heads, _, dim = self.query.shape
        key_heads, n_keys = self.key.shape[1], self.key.shape[2]
        group = heads // key_heads
        rows = stop - start
        # Each key head serves `group` consecutive query heads: one product per key head, no expanded copy.
        query = self.query[:, :, start:stop].reshape(batch, key_heads, group * rows, dim)
        scores = torch.matmul(query, self.key.transpose(-1, -2)).view(batch, heads, rows, n_keys) * self.scaling
        if self.softcap is not None:
            scores = torch.tanh(scores / self.softcap) * self.softcap
        mask = self.mask[:, :, start:stop]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask
        return torch.softmax(scores, dim=-1, dtype=torch.float32)

    def spans(self) -> Iterator[tuple[int, int]]:
        return _spans(self.shape[2], self.chunk)

    def select(self, index: torch.Tensor) -> AttentionInputs:
        return replace(self, query=self.query[index], key=self.key[index], mask=self.mask[index])

    def nbytes(self) -> int:
        """What this layer's inputs hold (the mask is shared by the layers and counted by the caller)."""
        return self.query.numel() * self.query.element_size() + self.key.numel() * self.key.element_size()


def _spans(rows: int, chunk: int | None) -> Iterator[tuple[int, int]]:
    step = rows if not chunk else max(1, min(chunk, rows))
    return ((start, min(start + step, rows)) for start in range(0, rows, step))


@dataclass(frozen=True)
class Capture:
    """What one model computed on one batch.

    ``hidden_states[l]``: (batch, tokens, hidden) for l = 0 (embeddings) .. L.
    ``attentions[l - 1]``: (batch, heads, query, key) probabilities of layer l.
    ``attention_rows[l - 1]``: layer l's attention read a chunk of query rows at a time
    (:class:`AttentionInputs`, recomputed from the queries and keys the model used, or
    :class:`AttentionMaps` over eager maps where a family's attention cannot be recomputed).
    Each is None when no metric asked for it; :meth:`rows` serves attention rows from
    either.

    probekit hands the same Capture to every comparison and metric that uses this
    model on this batch: what they derive from one model alone (a float64 copy of a
    layer's datapoints, their Gram matrix, attention row entropies) they can compute
    once through :meth:`derived`.
    """

    hidden_states: tuple[torch.Tensor, ...] | None
    attentions: tuple[torch.Tensor, ...] | None
    attention_rows: tuple[AttentionInputs | AttentionMaps, ...] | None = None
    _derived: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def derived(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()``, called once per capture however many comparisons and metrics ask for ``key``.

        ``key`` names the value and whatever it depends on beyond this capture and its
        batch (a layer, an option), e.g. ``("svcca.datapoints", layer, tokens)``; the
        value lives as long as the capture (one batch).
        """
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]

    def rows(self, layer: int) -> AttentionInputs | AttentionMaps:
        """Layer ``layer + 1``'s attention rows (``layer`` counts from 0, as ``attentions`` does)."""
        if self.attention_rows is not None:
            return self.attention_rows[layer]
        return AttentionMaps(self.attentions[layer])

    @property
    def attention_layers(self) -> int:
        """How many layers' attention the capture holds."""
        return len(self.attention_rows if self.attention_rows is not None else self.attentions)

    def select(self, index: torch.Tensor) -> Capture:
        """What the model computed on the examples at ``index`` (a 1-D tensor of positions)."""
        pick = lambda layers: None if layers is None else tuple(t[index] for t in layers)  # noqa: E731
        rows = None if self.attention_rows is None else tuple(r.select(index) for r in self.attention_rows)
        return Capture(pick(self.hidden_states), pick(self.attentions), rows)
