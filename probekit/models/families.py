"""The model families probekit knows: where a model's layers and embeddings are, and whether it is a decoder.

One table, keyed by ``config.model_type``: every place that needs to know a
model's layout (layer replacement, the forward inputs of a decoder, the token
conventions of the metrics) reads it here. Paths are attribute paths from the
base model (what ``AutoModel`` loads; a model with a task head is looked up
through its ``base_model``). A family is added with one entry of ``FAMILIES``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from probekit.errors import ModelError
from probekit.metrics.tensors import Batch


def _no_problem(config: Any) -> str:
    return ""


def _deberta_conv(config: Any) -> str:
    if getattr(config, "conv_kernel_size", 0) > 0:
        return ("its convolution after layer 1 (conv_kernel_size > 0) mixes layer 1's input and output outside "
                "the layer list, so layers cannot be run again one by one")
    return ""


@dataclass(frozen=True)
class Family:
    """How one family of models is laid out."""

    name: str
    #: The ModuleList of transformer layers: hidden_states[l] is the output of layers[l - 1]
    #: (hidden_states[L] after the model's final norm, where it has one: transformers returns it so).
    layers: str
    #: The modules computing the input of layer 1 (hidden_states[0]). The first always exists;
    #: the others only under some configs (a projection when the embedding width differs).
    embeddings: tuple[str, ...]
    causal: bool = False  # a decoder: each token attends to itself and the tokens before it
    token_types: bool = False  # the forward takes token_type_ids
    tuple_layers: bool = False  # the model's loop unpacks (hidden, attention) from each layer call
    #: Why layer replacement cannot run on a model of this config ("" when it can).
    replacement_problem: Callable[[Any], str] = _no_problem
    #: Why this family's attention cannot be recomputed from the queries and keys its attention function
    #: receives ("" when it can: probekit then runs it with SDPA and recomputes the rows a chunk at a time).
    maps_only: str = ""


def _bert_like(name: str, embeddings: tuple[str, ...] = ("embeddings",)) -> Family:
    return Family(name, "encoder.layer", embeddings, token_types=True)


def _llama_like(name: str) -> Family:
    return Family(name, "layers", ("embed_tokens",), causal=True)


FAMILIES: dict[str, Family] = {
    "bert": _bert_like("BERT"),
    "roberta": _bert_like("RoBERTa"),
    "xlm-roberta": _bert_like("XLM-RoBERTa"),
    "electra": _bert_like("ELECTRA", ("embeddings", "embeddings_project")),
    "distilbert": Family("DistilBERT", "transformer.layer", ("embeddings",)),
    "deberta-v2": Family("DeBERTa-v2", "encoder.layer", ("embeddings",), token_types=True, tuple_layers=True,
                         replacement_problem=_deberta_conv,
                         maps_only="its disentangled attention adds content-to-position and position-to-content "
                                   "scores computed from relative position embeddings, outside the queries and keys"),
    "modernbert": Family("ModernBERT", "layers", ("embeddings",)),
    "gpt2": Family("GPT-2", "h", ("wte", "wpe"), causal=True),
    "llama": _llama_like("Llama"),
    "mistral": _llama_like("Mistral"),
    "qwen2": _llama_like("Qwen2"),
    "qwen3": _llama_like("Qwen3"),
    "gemma": _llama_like("Gemma"),
    "gpt_neox": Family("GPT-NeoX", "layers", ("embed_in",), causal=True),
    "opt": Family("OPT", "decoder.layers", ("decoder.embed_tokens", "decoder.embed_positions", "decoder.project_in"),
                  causal=True),
}


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformer of ``model`` without its task head (itself for an ``AutoModel``)."""
    return getattr(model, "base_model", model)


def family_of(model: torch.nn.Module) -> Family:
    """``model``'s family, or a ModelError naming its class and model_type and how to add it."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    family = FAMILIES.get(model_type)
    if family is None:
        raise ModelError(
            f"probekit does not know the model family of {type(model).__name__} (config.model_type "
            f"{model_type!r}); it knows {', '.join(sorted(FAMILIES))}. To add it, add an entry to FAMILIES in "
            f"probekit/models/families.py naming its ModuleList of layers and its embedding modules, e.g. "
            f"{model_type!r}: Family(\"Name\", layers=\"layers\", embeddings=(\"embed_tokens\",), causal=True)"
        )
    return family


def _attribute(model: torch.nn.Module, path: str):
    for name in path.split("."):
        model = getattr(model, name, None)
    return model


def transformer_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """``model``'s transformer layers, where its family's entry says they are."""
    family = family_of(model)
    layers = _attribute(base_model(model), family.layers)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ModelError(f"{type(model).__name__} has no ModuleList `{family.layers}`, where probekit's table "
                         f"(probekit/models/families.py) says {family.name} models keep their layers")
    return layers


def embedding_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules that compute ``model``'s hidden_states[0] (those its config has)."""
    found = [_attribute(base_model(model), path) for path in family_of(model).embeddings]
    return [module for module in found if isinstance(module, torch.nn.Module)]


def model_inputs(model: torch.nn.Module, batch: Batch) -> dict[str, torch.Tensor | bool]:
    """The keyword arguments of ``model``'s forward for ``batch``.

    A decoder gets position ids counted over each example's real tokens, so a
    left-padded example has the positions it has unpadded (transformers counts
    from the first column), and no KV cache (nothing is generated). Token type
    ids go only to families whose forward takes them.
    """
    family = family_of(model)
    inputs: dict[str, torch.Tensor | bool] = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    if family.token_types and batch.token_type_ids is not None:
        inputs["token_type_ids"] = batch.token_type_ids
    if family.causal:
        # (batch, tokens): 0 at each example's first real token; padding gets 0 (it is masked out)
        inputs["position_ids"] = (batch.attention_mask.long().cumsum(-1) - 1).clamp_min(0)
        inputs["use_cache"] = False
    return inputs
