"""Attention without maps: the queries, keys and mask each layer's attention used, recorded during an SDPA forward.

transformers dispatches every supported family's attention through its
``AttentionInterface`` (and builds the mask through ``AttentionMaskInterface``) by the
name in ``config._attn_implementation``. probekit registers one more name,
:data:`RECOMPUTED`: its attention function records the layer's query, key, mask,
scaling and soft-cap exactly as the model hands them over (after rotary embeddings, with
the family's scaling, its causal / padding / sliding-window mask) and then calls
transformers' SDPA function for the output, so the forward pass itself never builds a map.
Its mask function is SDPA's, always materialised (never skipped in favour of
``is_causal``), so the recorded mask is the one the scores were masked with.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from probekit.errors import ModelError
from probekit.metrics.tensors import AttentionInputs
from probekit.models.families import family_of

#: The attention implementation name under which a model runs SDPA and records its attention inputs.
RECOMPUTED = "probekit_recorded_sdpa"

_recording: contextvars.ContextVar[list[AttentionInputs] | None] = contextvars.ContextVar("probekit_attention",
                                                                                          default=None)


class AttentionBackendError(ModelError):
    """The attention backend refused what the model handed it (a mask of a form it does not take)."""


def _recorded_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                   **kwargs) -> tuple[torch.Tensor, None]:
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    softcap = kwargs.pop("softcap", None)
    mask = attention_mask if attention_mask is not None else _implicit_mask(module, query, key)
    inputs = AttentionInputs(query.contiguous(), key.contiguous(), mask, float(scaling), softcap)
    record = _recording.get()
    if record is not None:
        record.append(inputs)
    if softcap is not None:  # SDPA cannot soft-cap: the output from the recorded rows, a chunk at a time
        return _softcapped_output(inputs, value, module), None
    try:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    except torch.OutOfMemoryError:  # a RuntimeError too, but the probe's to handle (it halves the micro-batch)
        raise
    except RuntimeError as error:
        what = "no mask" if attention_mask is None else \
            f"a {attention_mask.dtype} mask of shape {tuple(attention_mask.shape)}"
        raise AttentionBackendError(
            f"{type(module).__name__}: torch's scaled_dot_product_attention refused {what} on {query.device} "
            f"({error}); set [run] attention = \"maps\" to use eager attention") from error


def _implicit_mask(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """The mask SDPA applies when the model passes none: causal where the module is (``is_causal``), else none."""
    n_query, n_key = query.shape[2], key.shape[2]
    attended = torch.ones(n_query, n_key, dtype=torch.bool, device=query.device)
    if getattr(module, "is_causal", True) and n_query > 1:
        attended = attended.tril(n_key - n_query)
    return attended.expand(query.shape[0], 1, n_query, n_key)


def _softcapped_output(inputs: AttentionInputs, value: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
    """softmax(capped scores) @ value, a chunk of query rows at a time: (batch, query, heads, d)."""
    groups = inputs.query.shape[1] // value.shape[1]
    value = value.repeat_interleave(groups, dim=1)
    chunk = max(1, 2**24 // max(1, inputs.query.shape[0] * inputs.query.shape[1] * inputs.key.shape[2]))
    parts = [inputs.probabilities(start, min(start + chunk, inputs.shape[2])).to(value.dtype) @ value
             for start in range(0, inputs.shape[2], chunk)]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous()


def _materialised_mask(*args, **kwargs):
    kwargs["allow_is_causal_skip"] = False
    kwargs["allow_is_bidirectional_skip"] = False
    return sdpa_mask(*args, **kwargs)


AttentionInterface.register(RECOMPUTED, _recorded_sdpa)
AttentionMaskInterface.register(RECOMPUTED, _materialised_mask)


def attention_path(model: torch.nn.Module, policy: str = "auto", description: str = "model") -> str:
    """"recomputed" or "maps": how ``model``'s attention rows are read under ``[run] attention = policy``.

    Raises ModelError when ``policy`` is "recomputed" and the family cannot take it.
    """
    problem = family_of(model).maps_only
    if policy == "maps" or (policy == "auto" and problem):
        return "maps"
    if problem:
        raise ModelError(f"{description}: [run] attention = \"recomputed\", but {family_of(model).name} attention "
                         f"cannot be recomputed from queries and keys: {problem}; set attention = \"auto\" or "
                         "\"maps\" (eager attention maps)")
    return "recomputed"


@contextlib.contextmanager
def recording() -> Iterator[list[AttentionInputs]]:
    """Collects the attention inputs of every layer a model run under :data:`RECOMPUTED` computes, in order."""
    record: list[AttentionInputs] = []
    token = _recording.set(record)
    try:
        yield record
    finally:
        _recording.reset(token)
