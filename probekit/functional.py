"""Public: the math a metric plugin builds on, on plain tensors and on streamed moments.

Like pytest's ``pytest`` re-exporting ``_pytest``, this module names what plugin authors
may import; where each lives inside probekit may change, these names do not
(docs/plugins.md, "The public surface").
"""
from __future__ import annotations

from probekit.metrics.attention import (
    attention_entropy_per_example,
    attention_share_per_example,
    mean_over_rows,
    query_rows,
    row_js,
    row_plogp,
    row_share,
)
from probekit.metrics.functional import (
    CCAResult,
    CrossMoments,
    CrossProducts,
    Datapoints,
    FewDatapointsWarning,
    HSICMoments,
    SVCCAResult,
    attention_js,
    attention_js_per_example,
    attention_row_plogp,
    cca,
    cca_from_moments,
    datapoints,
    debiased_cka,
    debiased_cka_from_moments,
    linear_cka,
    linear_cka_from_moments,
    nearest_neighbours,
    procrustes,
    procrustes_from_moments,
    pwcca,
    pwcca_from_moments,
    svcca,
    svcca_from_moments,
    unbiased_hsic,
)
from probekit.metrics.probing import (
    C_GRID,
    MDL_PORTIONS,
    OnlineCode,
    ProbeResult,
    bootstrap_indices,
    choose_c,
    control_by_type,
    majority_share,
    online_codelength,
    percentile_interval,
    score,
    shuffled,
    train_and_predict,
)
from probekit.metrics.moments import (
    layer_datapoints,
    pooled_layer_moments,
    svcca_row,
    svcca_rows,
)

__all__ = [
    "C_GRID", "MDL_PORTIONS", "OnlineCode", "ProbeResult", "bootstrap_indices", "choose_c", "control_by_type",
    "majority_share", "online_codelength", "percentile_interval", "score", "shuffled", "train_and_predict",
    "CCAResult", "CrossMoments", "CrossProducts", "Datapoints", "FewDatapointsWarning", "HSICMoments", "SVCCAResult",
    "attention_entropy_per_example", "attention_js", "attention_js_per_example", "attention_row_plogp",
    "attention_share_per_example", "cca", "cca_from_moments", "datapoints", "debiased_cka", "debiased_cka_from_moments",
    "layer_datapoints", "linear_cka", "linear_cka_from_moments", "nearest_neighbours", "pooled_layer_moments",
    "procrustes", "procrustes_from_moments", "pwcca", "pwcca_from_moments", "query_rows", "svcca",
    "svcca_from_moments", "svcca_row", "svcca_rows", "unbiased_hsic", "mean_over_rows", "row_js", "row_plogp",
    "row_share",
]
