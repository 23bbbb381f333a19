"""The tensors a metric receives: a tokenized batch and what each model computed on it."""
from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, fields
from typing import Any

import torch


@dataclass(frozen=True)
class Batch:
    """A tokenized batch.

    ``input_ids``, ``attention_mask`` (1 = real token), ``special_tokens_mask``
    (1 = [CLS]/[SEP]/...), ``token_type_ids``: (batch, tokens); ``labels``: (batch,).
    """

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
class Capture:
    """What one model computed on one batch.

    ``hidden_states[l]``: (batch, tokens, hidden) for l = 0 (embeddings) .. L.
    ``attentions[l - 1]``: (batch, heads, query, key) probabilities of layer l.
    Either is None when no metric asked for it.

    probekit hands the same Capture to every comparison and metric that uses this
    model on this batch: what they derive from one model alone (a float64 copy of a
    layer's datapoints, their Gram matrix, attention row entropies) they can compute
    once through :meth:`derived`.
    """

    hidden_states: tuple[torch.Tensor, ...] | None
    attentions: tuple[torch.Tensor, ...] | None
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

    def select(self, index: torch.Tensor) -> Capture:
        """What the model computed on the examples at ``index`` (a 1-D tensor of positions)."""
        pick = lambda layers: None if layers is None else tuple(t[index] for t in layers)  # noqa: E731
        return Capture(pick(self.hidden_states), pick(self.attentions))
