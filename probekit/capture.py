"""One forward pass of an encoder, keeping what the metrics of a comparison need."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from probekit.data import Batch


class CaptureError(RuntimeError):
    """The model did not return what a metric needs."""


@dataclass(frozen=True)
class Capture:
    """What one model computed on one batch.

    ``hidden_states[l]``: (batch, tokens, hidden) for l = 0 (embeddings) .. L.
    ``attentions[l - 1]``: (batch, heads, query, key) probabilities of layer l.
    Either is None when no metric asked for it.
    """

    hidden_states: tuple[torch.Tensor, ...] | None
    attentions: tuple[torch.Tensor, ...] | None


@torch.inference_mode()
def forward(encoder: torch.nn.Module, batch: Batch, needs: frozenset[str], model_name: str = "model") -> Capture:
    want_hidden = "hidden_states" in needs
    want_attentions = "attentions" in needs
    output = encoder(
        **batch.model_inputs(),
        output_hidden_states=want_hidden,
        output_attentions=want_attentions,
        return_dict=True,
    )
    attentions = output.attentions if want_attentions else None
    if want_attentions and (not attentions or any(a is None for a in attentions)):
        implementation = getattr(encoder.config, "_attn_implementation", "?")
        raise CaptureError(
            f"{model_name}: the model returned no attention maps (attention implementation "
            f"{implementation!r}); attention metrics need attn_implementation='eager'"
        )
    return Capture(hidden_states=output.hidden_states if want_hidden else None, attentions=attentions)
