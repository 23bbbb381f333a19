"""Layer replacement (Hao et al. 2020, section 4, Figure 3).

For each layer l (0 = the embeddings, 1..L = transformer layers): the fine-tuned
model (b) with layer l's parameters put back to their pre-trained values (a),
run on the comparison's data; the value is the SVCCA distance between its last
layer's output and that of the unchanged fine-tuned model. X is the model with
layer l replaced, Y the unchanged fine-tuned model (k_x, k_y in the details).

Inputs to layer l are the same in both models, so only layers l..L run again,
inside the fine-tuned model's own forward: each family keeps its own masks
(causal, sliding-window), position embeddings (rotary), relative-position
embeddings and final norm. In that forward layers 1..l-1 stand in with their
outputs from the capture (hidden_states[1..l-1], nothing computed), layer l is
the pre-trained layer on hidden_states[l - 1] with the arguments the fine-tuned
model gives it, and layers l+1..L are the fine-tuned model's. For l = 0 the
fine-tuned first layer takes the pre-trained model's hidden_states[0] (its
embeddings' output on the same batch). No model is copied. A layer whose
parameters are identical in both models (e.g. frozen during fine-tuning) changes
nothing: its value is exactly 0 and nothing is recomputed for it.

Supports every family of probekit/models/families.py whose layers can run again
one by one (not DeBERTa-v2 with a convolution after layer 1).
"""
from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

import probekit
from probekit.families import (
    base_model,
    embedding_modules,
    family_of,
    model_inputs,
    transformer_layers,
)
from probekit.functional import (
    CrossMoments,
    datapoints,
    pooled_layer_moments,
    svcca_rows,
)

#: One recorded layer call: the positional arguments after the hidden state, and the keyword arguments.
Arguments = tuple[tuple, dict]


@dataclass(frozen=True)
class _Stack:
    """What layer replacement runs of one model."""

    model: torch.nn.Module  # the base model (its forward runs the layers)
    layers: torch.nn.ModuleList
    embeddings: list[torch.nn.Module]  # what computes hidden_states[0]
    tuple_layers: bool  # the model's loop unpacks a tuple from each layer


def _stack(loaded) -> _Stack:
    """``loaded``'s layers and embeddings, or a MetricError when its family cannot run them one by one."""
    encoder = loaded.encoder
    try:
        family, layers = family_of(encoder), transformer_layers(encoder)
    except probekit.ModelError as error:
        raise probekit.MetricError(f"layer_replacement: {loaded.name}: {error}") from error
    problem = family.replacement_problem(encoder.config)
    if problem:
        raise probekit.MetricError(f"layer_replacement cannot run on {loaded.name}, a {family.name} model: {problem}")
    # transformers 4 layers return tuples, whatever the family; 5's return the hidden state (DeBERTa-v2's excepted).
    tuple_layers = family.tuple_layers or int(importlib.metadata.version("transformers").split(".")[0]) < 5
    return _Stack(base_model(encoder), layers, embedding_modules(encoder), tuple_layers)


def _same_parameters(a: list[torch.nn.Module], b: list[torch.nn.Module]) -> bool:
    """Whether putting the values of modules ``a`` into modules ``b`` would change nothing."""
    state_a = [module.state_dict() for module in a]
    state_b = [module.state_dict() for module in b]
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(x[k].shape == y[k].shape and torch.equal(x[k], y[k].to(x[k].device)) for k in x)
        for x, y in zip(state_a, state_b)
    )


@contextmanager
def _forwards(swaps: dict[torch.nn.Module, Callable]) -> Iterator[None]:
    """Each module of ``swaps`` computing with its function in place of its ``forward`` while the block runs.

    An instance attribute shadows the class's ``forward``; the module's hooks and the
    attributes a model's loop reads (ModernBERT's ``attention_type``) stay as they are.
    """
    saved = {module: module.__dict__.get("forward") for module in swaps}
    for module, function in swaps.items():
        module.forward = function
    try:
        yield
    finally:
        for module, previous in saved.items():
            if previous is None:
                del module.forward
            else:
                module.forward = previous


def _given(output: torch.Tensor, as_tuple: bool) -> Callable:
    """A layer's stand-in that computes nothing: its output (batch, tokens, hidden), from the capture."""
    result = (output, None) if as_tuple else output
    return lambda *args, **kwargs: result


def _fed(function: Callable, hidden: torch.Tensor, arguments: Arguments | None = None) -> Callable:
    """A layer's stand-in: ``function`` on ``hidden`` in place of the input the model gives the layer, with the
    model's other arguments (masks, position embeddings, ...), or with ``arguments`` when given."""

    def stand_in(_input, *args, **kwargs):
        if arguments is not None:
            args, kwargs = arguments
        return function(hidden, *args, **kwargs)

    return stand_in


def _layer_arguments(stack: _Stack, batch) -> list[Arguments]:
    """The arguments ``stack``'s own forward gives each of its layers on ``batch``; no layer computes."""
    calls: list[Arguments] = []

    def record(hidden, *args, **kwargs):
        calls.append((args, kwargs))
        return (hidden, None) if stack.tuple_layers else hidden

    with _forwards(dict.fromkeys(stack.layers, record)):
        stack.model(**model_inputs(stack.model, batch))
    return calls


def _attention(stack: _Stack) -> str:
    return getattr(stack.model.config, "_attn_implementation", "eager")


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
    Options = probekit.SVCCAOptions

    def __init__(self, options: probekit.SVCCAOptions, context) -> None:
        super().__init__(options, context)
        options.check_model(context)
        self.pretrained = _stack(context.model_a)
        self.finetuned = _stack(context.model_b)
        num_a, num_b = len(self.pretrained.layers), len(self.finetuned.layers)
        if num_a != num_b:
            raise probekit.MetricError(
                f"layer_replacement: {context.model_a.name} has {num_a} layers and "
                f"{context.model_b.name} {num_b}; a layer can only be put back into the same architecture"
            )
        pairs = [(self.pretrained.embeddings, self.finetuned.embeddings),
                 *(([a], [b]) for a, b in zip(self.pretrained.layers, self.finetuned.layers))]
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
        arguments_a = None
        if not all(self.unchanged) and _attention(self.pretrained) != _attention(self.finetuned):
            # b's masks are in the form b's attention implementation takes (sdpa: boolean or
            # None, eager: additive); a's layers get theirs, built by a's own forward.
            arguments_a = _layer_arguments(self.pretrained, batch)
        for layer, moments in enumerate(self.moments):
            if self.unchanged[layer]:
                moments.update(reference, reference)
                continue
            state = self._replaced(layer, a.hidden_states[0], hidden, batch, arguments_a)
            moments.update(datapoints(state, batch.attention_mask, tokens), reference)
        self.n_examples += batch.size

    def _replaced(self, layer: int, embedded_a: torch.Tensor, hidden: tuple[torch.Tensor, ...], batch,
                  arguments_a: list[Arguments] | None) -> torch.Tensor:
        """The last hidden state (batch, tokens, hidden) of the fine-tuned model with ``layer`` put back."""
        layers_b = self.finetuned.layers
        if layer == 0:  # b's own first layer (its forward taken before the swap) on a's embeddings
            swaps = {layers_b[0]: _fed(layers_b[0].forward, embedded_a)}
        else:
            swaps = {layers_b[i]: _given(hidden[i + 1], self.finetuned.tuple_layers) for i in range(layer - 1)}
            arguments = None if arguments_a is None else arguments_a[layer - 1]
            swaps[layers_b[layer - 1]] = _fed(self.pretrained.layers[layer - 1], hidden[layer - 1], arguments)
        model = self.finetuned.model
        with _forwards(swaps):
            return model(**model_inputs(model, batch), return_dict=True).last_hidden_state

    @classmethod
    def pooled(cls, parts, weights) -> LayerReplacement:
        return pooled_layer_moments(parts, weights)

    def finalize(self) -> list[probekit.Row]:
        return svcca_rows(self.moments, self.options, self.n_examples)


@probekit.hookimpl
def probekit_register_metrics(register):
    register(LayerReplacement)
