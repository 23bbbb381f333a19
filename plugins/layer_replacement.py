"""Layer replacement (Hao et al. 2020, section 4, Figure 3).

For each layer l (0 = the embeddings, 1..L = encoder layers): the fine-tuned
model (b) with layer l's parameters put back to their pre-trained values (a),
run on the comparison's data; the value is the SVCCA distance between its last
layer's output and that of the unchanged fine-tuned model. X is the model with
layer l replaced, Y the unchanged fine-tuned model (k_x, k_y in the details).

Inputs to layer l are the same in both models, so only layers l..L run again:
the pre-trained layer l on the fine-tuned model's hidden_states[l - 1] (for
l = 0, the pre-trained embeddings on the batch's inputs), then the fine-tuned
layers l+1..L. No model is copied. A layer whose parameters are identical in
both models (e.g. frozen during fine-tuning) changes nothing: its value is
exactly 0 and nothing is recomputed for it.

Supports BERT-family encoders (``.embeddings`` and ``.encoder.layer``: BERT,
RoBERTa, ELECTRA, MiniLM, ...).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import probekit
from probekit.metrics.functional import CrossMoments, datapoints
from probekit.metrics.moments import pooled_layer_moments
from probekit.plugins.svcca import Options, svcca_rows


@dataclass(frozen=True)
class _Parts:
    """The modules of a BERT-family encoder that layer replacement swaps."""

    encoder: torch.nn.Module
    embeddings: torch.nn.Module
    layers: torch.nn.ModuleList


def encoder_parts(loaded) -> _Parts:
    """``loaded.encoder``'s embeddings and layers, or a ValueError naming what is missing."""
    encoder = loaded.encoder
    encoder = getattr(encoder, "base_model", encoder)  # a model with a task head: its encoder
    embeddings = getattr(encoder, "embeddings", None)
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(embeddings, torch.nn.Module) or not isinstance(layers, torch.nn.ModuleList):
        raise probekit.MetricError(
            f"layer_replacement: {loaded.name} is a {type(loaded.encoder).__name__}; the metric supports "
            "BERT-family encoders, which have `.embeddings` and `.encoder.layer` (a ModuleList of layers), "
            "as BertModel, RobertaModel and ElectraModel do"
        )
    return _Parts(encoder, embeddings, layers)


def _same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether putting ``a``'s values into ``b`` would change nothing."""
    state_a, state_b = a.state_dict(), b.state_dict()
    return state_a.keys() == state_b.keys() and all(
        state_a[k].shape == state_b[k].shape and torch.equal(state_a[k], state_b[k].to(state_a[k].device))
        for k in state_a
    )


def layer_attention_mask(encoder: torch.nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor):
    """The attention mask in the form ``encoder``'s layers take, built as its own forward builds it.

    transformers 5: ``masking_utils.create_bidirectional_mask`` for the config's attention
    implementation (eager: additive float; sdpa: boolean, or None without padding);
    transformers 4: the model's ``get_extended_attention_mask`` (additive float).
    """
    try:
        from transformers.masking_utils import create_bidirectional_mask
    except ImportError:  # transformers 4
        return encoder.get_extended_attention_mask(attention_mask, attention_mask.shape, dtype=hidden.dtype)
    return create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden, attention_mask=attention_mask)


def _run(layer: torch.nn.Module, hidden: torch.Tensor, mask) -> torch.Tensor:
    output = layer(hidden, mask)
    return output[0] if isinstance(output, tuple) else output  # transformers 4 layers return tuples


class LayerReplacement(probekit.Metric):
    name = "layer_replacement"
    description = (
        "SVCCA distance of the fine-tuned model's last layer when one layer (0 = embeddings) "
        "is put back to its pre-trained values"
    )
    unit = "1 - mean rho"
    needs = frozenset({"hidden_states", "models"})
    direction = "distance"
    layers = "hidden_states"
    details = {"k_x": int, "k_y": int, "rule": str, "threshold": float}
    estimator = "exact moments"
    Options = Options

    def __init__(self, options: Options, context) -> None:
        super().__init__(options, context)
        self.pretrained = encoder_parts(context.model_a)
        self.finetuned = encoder_parts(context.model_b)
        num_a, num_b = len(self.pretrained.layers), len(self.finetuned.layers)
        if num_a != num_b:
            raise probekit.MetricError(
                f"layer_replacement: {context.model_a.name} has {num_a} layers and "
                f"{context.model_b.name} {num_b}; a layer can only be put back into the same architecture"
            )
        pairs = [(self.pretrained.embeddings, self.finetuned.embeddings),
                 *zip(self.pretrained.layers, self.finetuned.layers)]
        self.unchanged = [_same_parameters(a, b) for a, b in pairs]
        self.moments = [CrossMoments() for _ in pairs]
        self.n_examples = 0

    @torch.inference_mode()
    def update(self, a, b, batch) -> None:
        hidden = b.hidden_states
        num_layers = len(self.finetuned.layers)
        if hidden is None or len(hidden) != num_layers + 1:
            raise probekit.MetricError(
                f"layer_replacement: expected {num_layers + 1} hidden states of {self.context.model_b.name}; "
                f"got {None if hidden is None else len(hidden)}"
            )
        tokens = self.options.tokens
        reference = datapoints(hidden[num_layers], batch.attention_mask, tokens)
        if not all(self.unchanged):
            # Each side's layers get the mask its own config asks for (eager and sdpa differ).
            mask_a = layer_attention_mask(self.pretrained.encoder, hidden[0], batch.attention_mask)
            mask_b = layer_attention_mask(self.finetuned.encoder, hidden[0], batch.attention_mask)
        for layer, moments in enumerate(self.moments):
            if self.unchanged[layer]:
                moments.update(reference, reference)
                continue
            if layer == 0:
                inputs = {"input_ids": batch.input_ids}
                if batch.token_type_ids is not None:
                    inputs["token_type_ids"] = batch.token_type_ids
                state = self.pretrained.embeddings(**inputs)
            else:
                state = _run(self.pretrained.layers[layer - 1], hidden[layer - 1], mask_a)
            for module in self.finetuned.layers[layer:]:
                state = _run(module, state, mask_b)
            moments.update(datapoints(state, batch.attention_mask, tokens), reference)
        self.n_examples += batch.size

    @classmethod
    def pooled(cls, parts, weights) -> LayerReplacement:
        return pooled_layer_moments(parts, weights)

    def finalize(self) -> list[probekit.Row]:
        return svcca_rows(self.moments, self.options, self.n_examples)


@probekit.hookimpl
def probekit_register_metrics(register):
    register(LayerReplacement)
