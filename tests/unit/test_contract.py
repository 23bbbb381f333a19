"""check_metric: the built-in metrics keep the contract; metrics that break it fail with the property named."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import probekit
from probekit.plugins.attention_js import AttentionJS
from probekit.plugins.layer_replacement import LayerReplacement
from probekit.plugins.svcca import SVCCA
from probekit.testing.contract import check_metric


@pytest.mark.parametrize("metric", [SVCCA, AttentionJS, LayerReplacement], ids=lambda m: m.name)
def test_builtin_metrics_keep_the_contract(metric):
    check_metric(metric)


def test_options_are_given_as_a_spec_table_or_an_options_instance():
    check_metric(AttentionJS, {"base": 2, "exclude_special": True})
    check_metric(SVCCA, SVCCA.Options(rule="variance"))


class MeanAbsDifference(probekit.Metric):
    """A correct toy metric: mean |x - y| over real tokens, per layer; the broken ones below change one thing."""

    name = "mean_abs_difference"
    needs = frozenset({"hidden_states"})
    direction = "distance"

    def __init__(self, options, context) -> None:
        super().__init__(options, context)
        self.sums = [0.0] * (context.num_layers + 1)
        self.n_tokens = 0
        self.n_examples = 0
        self.batch_means = []  # per batch: per layer mean, for the broken variant

    def update(self, a, b, batch) -> None:
        mask = batch.attention_mask.bool()  # (batch, tokens)
        # per layer: (real tokens,) float64, the mean over hidden of |x - y|
        per_token = [(x[mask] - y[mask]).abs().to(torch.float64).mean(-1)
                     for x, y in zip(a.hidden_states, b.hidden_states, strict=True)]
        self.sums = [s + float(t.sum()) for s, t in zip(self.sums, per_token)]
        self.batch_means.append([float(t.mean()) for t in per_token])
        self.n_tokens += int(mask.sum())
        self.n_examples += batch.size

    def values(self) -> list[float]:
        return [s / self.n_tokens for s in self.sums]

    def finalize(self) -> list[probekit.Row]:
        return [probekit.Row(layer, value, n_examples=self.n_examples, n_tokens=self.n_tokens)
                for layer, value in enumerate(self.values())]


class MeanOfBatchMeans(MeanAbsDifference):
    name = "mean_of_batch_means"

    def values(self) -> list[float]:
        return [sum(means) / len(means) for means in zip(*self.batch_means)]  # batches weigh alike: wrong


class PlusEpsilon(MeanAbsDifference):
    name = "plus_epsilon"

    def values(self) -> list[float]:
        return [value + 1e-3 for value in super().values()]  # "for stability"


class UndeclaredDetail(MeanAbsDifference):
    name = "undeclared_detail"

    def finalize(self) -> list[probekit.Row]:
        return [probekit.Row(row.layer, row.value, n_examples=row.n_examples, details={"n_datapoints": self.n_tokens})
                for row in super().finalize()]


class MissingEmbeddings(MeanAbsDifference):
    name = "missing_embeddings"

    def finalize(self) -> list[probekit.Row]:
        return super().finalize()[1:]


class DetailCollides(MeanAbsDifference):
    name = "detail_collides"
    details = {"layer": int}


@dataclass(frozen=True)
class BadDefault:
    scale: int = 0.5  # a float default for an int option: a spec cannot give it back


class RefusesItsDefault(MeanAbsDifference):
    name = "refuses_its_default"
    Options = BadDefault


class CrashesInFinalize(MeanAbsDifference):
    name = "crashes_in_finalize"

    def finalize(self) -> list[probekit.Row]:
        raise KeyError("oops")


def test_a_correct_toy_metric_passes():
    check_metric(MeanAbsDifference)


@pytest.mark.parametrize(("metric", "message"), [
    (MeanOfBatchMeans, r"'mean_of_batch_means' .* 'results do not depend on the batch size'(.|\n)*"
                       r"layer 0: value = .* in one batch of 48, .* in batches of 16"),
    (PlusEpsilon, r"'plus_epsilon' .* 'identical inputs give the identical value'(.|\n)*"
                  r"layer 0: 0.001, expected 0 for a distance"),
    (UndeclaredDetail, r"'undeclared_detail' .* 'rows are well formed'(.|\n)*"
                       r"layer 0: details key 'n_datapoints' is not declared"),
    (MissingEmbeddings, r"'missing_embeddings' .* 'rows are well formed'(.|\n)*no row for layer 0"),
    (DetailCollides, r"'detail_collides' .* 'it registers'(.|\n)*details key 'layer' is a column"),
    (RefusesItsDefault, r"'refuses_its_default' .* 'options round-trip'(.|\n)*scale = 0.5 \(its default\) is refused"),
    (CrashesInFinalize, r"'crashes_in_finalize' .* 'it measures two tiny models'(.|\n)*finalize raised KeyError"),
], ids=lambda value: getattr(value, "name", ""))
def test_broken_metrics_fail_with_the_property_named(metric, message):
    with pytest.raises(AssertionError, match=message):
        check_metric(metric)


def test_options_that_do_not_build_are_reported():
    with pytest.raises(AssertionError, match=r"'svcca' .* 'options round-trip'(.|\n)*tokens: found 'some'"):
        check_metric(SVCCA, {"tokens": "some"})
