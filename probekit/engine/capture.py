"""One forward pass of an encoder, keeping what the metrics of a comparison need."""
from __future__ import annotations

import torch

from probekit.errors import ModelError
from probekit.metrics.tensors import Batch, Capture
from probekit.models.families import model_inputs


class CaptureError(ModelError):
    """The model did not return what a metric needs."""


@torch.inference_mode()
def forward(encoder: torch.nn.Module, batch: Batch, needs: frozenset[str], model_name: str = "model") -> Capture:
    want_hidden = "hidden_states" in needs
    want_attentions = "attentions" in needs
    output = encoder(
        **model_inputs(encoder, batch),  # a decoder's position ids count real tokens: left padding works
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
    # A model spread over devices ([run] device_map) leaves each layer's output on its own device: gathered onto
    # the batch's, where the metric states live (a no-op for a model on one device).
    gather = lambda tensors: None if tensors is None else tuple(t.to(batch.input_ids.device) for t in tensors)  # noqa: E731
    return Capture(hidden_states=gather(output.hidden_states if want_hidden else None), attentions=gather(attentions))
