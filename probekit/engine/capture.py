"""One forward pass of an encoder, keeping what the metrics of a comparison need."""
from __future__ import annotations

import contextlib
from dataclasses import replace

import torch

from probekit.errors import ModelError
from probekit.metrics.tensors import AttentionMaps, Batch, Capture
from probekit.models.attention import RECOMPUTED, recording
from probekit.models.families import model_inputs


class CaptureError(ModelError):
    """The model did not return what a metric needs."""


@torch.inference_mode()
def forward(encoder: torch.nn.Module, batch: Batch, needs: frozenset[str], model_name: str = "model",
            chunk: int | None = None) -> Capture:
    """``encoder`` on ``batch``: the hidden states, attention maps and attention rows ``needs`` asks for.

    Attention rows come from the recorded queries and keys when the encoder runs under
    :data:`~probekit.models.attention.RECOMPUTED` (no map is built), else from eager maps;
    either way a metric reads them ``chunk`` query rows at a time (None: all at once).
    """
    want_hidden = "hidden_states" in needs
    want_rows = "attention_rows" in needs
    recomputed = want_rows and getattr(encoder.config, "_attn_implementation", None) == RECOMPUTED
    want_maps = "attentions" in needs or (want_rows and not recomputed)
    with recording() if recomputed else contextlib.nullcontext() as recorded:
        output = encoder(
            **model_inputs(encoder, batch),  # a decoder's position ids count real tokens: left padding works
            output_hidden_states=want_hidden,
            output_attentions=want_maps,
            return_dict=True,
        )
    attentions = _gather(output.attentions, batch) if want_maps else None
    if want_maps and (not attentions or any(a is None for a in attentions)):
        implementation = getattr(encoder.config, "_attn_implementation", "?")
        raise CaptureError(
            f"{model_name}: the model returned no attention maps (attention implementation "
            f"{implementation!r}); attention metrics need attn_implementation='eager'"
        )
    rows = None
    if recomputed:
        device = batch.input_ids.device  # as _gather: each layer's inputs onto the batch's device
        rows = tuple(replace(r, query=r.query.to(device), key=r.key.to(device), mask=r.mask.to(device), chunk=chunk)
                     for r in recorded)
    elif want_rows:
        rows = tuple(AttentionMaps(maps, chunk) for maps in attentions)
    hidden = _gather(output.hidden_states, batch) if want_hidden else None
    return Capture(hidden_states=hidden, attentions=attentions if "attentions" in needs else None, attention_rows=rows)


def _gather(tensors, batch: Batch):
    """A model spread over devices ([run] device_map) leaves each layer's output on its own device: gathered onto
    the batch's, where the metric states live (a no-op for a model on one device)."""
    return None if tensors is None else tuple(t.to(batch.input_ids.device) for t in tensors)
