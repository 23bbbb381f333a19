"""Statistics of one model's attention maps (Clark et al. 2019, "What does BERT look at?"), on plain arrays.

Each function takes attention probabilities ``p`` (batch, heads, query, key),
numpy or torch, and ``attention_mask`` (batch, tokens), nonzero for real tokens,
and returns one float64 value per example and head, on ``p``'s device: the mean
over the example's selected query tokens of a statistic of that query's attention
row. Padded keys are left out of the row (their mass is not renormalised away: a
model gives them ~0 already) and padded query rows are skipped; both may hold NaN.
``query_mask`` (batch, tokens) further restricts the averaged queries (it is
intersected with ``attention_mask``), e.g. to leave out [CLS]/[SEP].

Both raise ValueError on inconsistent shapes, on an example with no selected
query token (its mean is undefined), and on NaN, infinite or negative values
where a selected query row meets a real key.

The row functions (:func:`row_plogp`, :func:`row_share`, :func:`row_js`) compute the
same statistics per query row from a layer's :class:`~probekit.metrics.tensors.AttentionInputs`
or :class:`~probekit.metrics.tensors.AttentionMaps`, a chunk of query rows at a time, so a
whole map is never held; :func:`mean_over_rows` turns their (batch, heads, query) rows into
the per-example means.
"""
from __future__ import annotations

import math

import torch

from probekit.metrics.functional import _as_tensor, _row_plogp
from probekit.metrics.tensors import AttentionInputs, AttentionMaps

AttentionRows = AttentionInputs | AttentionMaps


def query_rows(attention_mask: torch.Tensor, special_tokens_mask: torch.Tensor | None = None, *,
               exclude_special: bool = False, exclude_first: bool = False) -> torch.Tensor:
    """The query rows an attention metric averages (batch, tokens): the real tokens, without the special
    tokens ([CLS]/[SEP]/BOS) under ``exclude_special``, and without each example's first real token under
    ``exclude_first`` (a decoder's attention sink, also where its tokenizer adds no BOS), under either padding."""
    rows = attention_mask
    if exclude_special:
        rows = rows * (1 - special_tokens_mask)
    if exclude_first:
        rows = rows * (attention_mask.long().cumsum(-1) != 1)
    return rows


def attention_entropy_per_example(p, attention_mask, *, base: float | None = None, query_mask=None) -> torch.Tensor:
    """Mean entropy of the attention rows, per example and head; (batch, heads) float64.

    Row i's entropy is H(i) = -sum_j p_ij log p_ij over real keys j, with
    0 log 0 = 0 and no epsilon. Natural log (nats) unless ``base`` is given
    (base=2: bits). A one-hot row has entropy 0, a uniform row over n real keys log n.
    """
    if base is not None and (base <= 0 or base == 1):
        raise ValueError(f"base must be positive and not 1; got {base}")
    p, queries = _used(p, attention_mask, query_mask)
    entropy = _mean_over_queries(-torch.xlogy(p, p).sum(dim=-1), queries)  # (batch, heads)
    return entropy if base is None else entropy / math.log(base)


def attention_share_per_example(p, attention_mask, key_mask, *, query_mask=None) -> torch.Tensor:
    """Mean share of each attention row on the keys of ``key_mask``, per example and head; (batch, heads) float64.

    Row i's share is sum_j p_ij over the real keys j that ``key_mask`` (batch,
    tokens) selects (nonzero), e.g. the batch's ``special_tokens_mask``. An
    example with no selected key has share 0.
    """
    p, queries = _used(p, attention_mask, query_mask)
    counted = _mask_like(key_mask, queries, "key_mask")  # (batch, key)
    share = torch.where(counted[:, None, None, :], p, 0.0).sum(dim=-1)  # (batch, heads, query)
    return _mean_over_queries(share, queries)


def _used(p, attention_mask, query_mask) -> tuple[torch.Tensor, torch.Tensor]:
    """``p`` in float64 with 0 outside selected real query rows and real keys, and the selected queries (batch, query).

    Zeroing what is not used lets the statistics sum whole rows and columns: padding
    may hold NaN, and contributes exactly 0 to both (0 log 0 = 0).
    """
    p = _as_tensor(p).to(torch.float64)  # (batch, heads, query, key)
    if p.dim() != 4 or p.shape[2] != p.shape[3]:
        raise ValueError(f"p must be square attention maps (batch, heads, query, key); got {tuple(p.shape)}")
    keys = _as_tensor(attention_mask, device=p.device) != 0  # (batch, key)
    if keys.shape != (p.shape[0], p.shape[3]):
        raise ValueError(f"attention_mask must be (batch, tokens) = ({p.shape[0]}, {p.shape[3]}) for maps "
                         f"{tuple(p.shape)}; got {tuple(keys.shape)}")
    queries = keys if query_mask is None else keys & _mask_like(query_mask, keys, "query_mask")  # (batch, query)
    empty = torch.nonzero(queries.sum(dim=-1) == 0).flatten().tolist()
    if empty:
        raise ValueError(f"examples {empty} have no selected query tokens; the per-example mean is undefined")
    # where(), not a product with the mask: NaN * 0 is NaN.
    p = torch.where(queries[:, None, :, None] & keys[:, None, None, :], p, 0.0)
    if not (torch.isfinite(p) & (p >= 0)).all():
        raise ValueError("attention maps contain NaN, infinite or negative values on real tokens")
    return p, queries


def _mask_like(mask, like: torch.Tensor, name: str) -> torch.Tensor:
    mask = _as_tensor(mask, device=like.device) != 0
    if mask.shape != like.shape:
        raise ValueError(f"{name} must have the shape of attention_mask {tuple(like.shape)}; got {tuple(mask.shape)}")
    return mask


def _mean_over_queries(per_row: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """(batch, heads, query) with 0 on unselected rows -> (batch, heads): the mean over each example's selected rows."""
    return per_row.sum(dim=-1) / queries.sum(dim=-1)[:, None]


# ------------------------------------------------------------------ per query row, chunk by chunk


def row_plogp(rows: AttentionRows, attention_mask: torch.Tensor) -> torch.Tensor:
    """sum_j p_ij log p_ij over the real keys j of each row (minus its entropy); (batch, heads, query) float64."""
    keys = _row_keys(rows, attention_mask)
    return torch.cat([_row_plogp(rows.probabilities(start, stop).to(torch.float64, copy=True), keys)
                      for start, stop in rows.spans()], dim=-1)


def row_share(rows: AttentionRows, attention_mask: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """sum_j p_ij over the real keys j that ``key_mask`` (batch, key) selects; (batch, heads, query) float64.

    A row with a NaN, infinite or negative probability on any real key is NaN (what
    :func:`mean_over_rows` refuses on a selected row), not a share that happens to miss it.
    """
    keys = _row_keys(rows, attention_mask)
    counted = (keys & (_as_tensor(key_mask, device=keys.device) != 0))[:, None, None, :]
    chunks = []
    for start, stop in rows.spans():
        real = torch.where(keys[:, None, None, :], rows.probabilities(start, stop).to(torch.float64), 0.0)
        broken = ~torch.isfinite(real).all(dim=-1) | (real < 0).any(dim=-1)
        chunks.append(torch.where(counted, real, 0.0).sum(dim=-1).masked_fill_(broken, math.nan))
    return torch.cat(chunks, dim=-1)


def row_js(rows_a: AttentionRows, rows_b: AttentionRows, attention_mask: torch.Tensor) -> torch.Tensor:
    """JS(P_i || Q_i) of each row over the real keys, clamped at >= 0; (batch, heads, query) float64.

    Both models' rows of a chunk are computed together (the mixture M needs both), so
    what is held is two chunks of rows, never a map; identical rows give exactly 0.
    """
    if rows_a.shape != rows_b.shape:
        raise ValueError(f"p and q must have the same shape (batch, heads, query, key); got {rows_a.shape} "
                         f"and {rows_b.shape}")
    keys = _row_keys(rows_a, attention_mask)
    chunks = []
    for start, stop in rows_a.spans():
        p, q = rows_a.probabilities(start, stop), rows_b.probabilities(start, stop)
        plogp = _row_plogp(p.to(torch.float64, copy=True), keys) + _row_plogp(q.to(torch.float64, copy=True), keys)
        m = p.to(torch.float64, copy=True).add_(q).mul_(0.5)  # float64 (p + q) / 2, bit for bit p where q == p
        chunks.append((0.5 * plogp - _row_plogp(m, keys)).clamp_min(0.0))
    return torch.cat(chunks, dim=-1)


def mean_over_rows(per_row: torch.Tensor, attention_mask: torch.Tensor, query_mask=None) -> torch.Tensor:
    """(batch, heads, query) -> (batch, heads) float64: each example's mean over its selected real query rows.

    Raises ValueError on an example with no selected row and on a value that is not finite
    on a selected row (NaN or infinite probabilities).
    """
    queries = _as_tensor(attention_mask, device=per_row.device) != 0
    if query_mask is not None:
        queries = queries & _mask_like(query_mask, queries, "query_mask")
    empty = torch.nonzero(queries.sum(dim=-1) == 0).flatten().tolist()
    if empty:
        raise ValueError(f"examples {empty} have no selected query tokens; the per-example mean is undefined")
    used = torch.where(queries[:, None, :], per_row, 0.0)  # where(): padded rows may hold NaN
    if not torch.isfinite(used).all():
        raise ValueError("attention maps contain NaN, infinite or negative values on real tokens")
    return _mean_over_queries(used, queries)


def _row_keys(rows: AttentionRows, attention_mask: torch.Tensor) -> torch.Tensor:
    """The real keys (batch, key), checked against the rows' shape."""
    batch, _, n_query, n_key = rows.shape
    keys = _as_tensor(attention_mask) != 0
    if n_query != n_key or tuple(keys.shape) != (batch, n_key):
        raise ValueError(f"attention_mask must be (batch, tokens) = ({batch}, {n_key}) for square attention; "
                         f"got mask {tuple(keys.shape)} and attention {rows.shape}")
    return keys
