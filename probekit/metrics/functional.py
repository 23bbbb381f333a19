"""Similarity math for probekit: SVCCA, plain CCA, PWCCA, Procrustes, CKA and JS divergence of attention.

Functions here take user arrays (numpy or torch, layout datapoints x neurons for
activations) and return plain results; they know nothing about models or plugins.
The metric plugins stream activations batch by batch into :class:`CrossMoments`
and finish with :func:`svcca_from_moments` / :func:`cca_from_moments`, so memory
is O(d^2) whatever the number of tokens.

Definitions follow the project's method reference (REFERENCE.md):

* SVCCA (Raghu et al., 2017): centre each neuron, keep the top-k singular
  directions of each side (google/svcca's rule by default: smallest k whose
  singular values reach 99% of their sum), canonical correlations rho between
  the reduced sets, similarity = plain mean of rho, distance = 1 - similarity.
* Linear CKA (Kornblith et al., 2019): ||Cxy||_F^2 / (||Cxx||_F ||Cyy||_F) of
  centred features, from :class:`CrossMoments`.
* Debiased CKA (Nguyen et al., 2021): CKA with the unbiased HSIC estimator of
  Song et al. (2012), linear kernels, from :class:`HSICMoments`.
* JS divergence of attention (Hao et al., 2020): per example the mean over real
  query tokens of JS(P || Q) between attention rows, then means over examples
  and heads. Natural log unless ``base`` is given.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "CCAResult",
    "CrossMoments",
    "CrossProducts",
    "Datapoints",
    "FewDatapointsWarning",
    "HSICMoments",
    "PooledSums",
    "SVCCAResult",
    "attention_js",
    "attention_js_per_example",
    "attention_row_plogp",
    "cca",
    "cca_from_moments",
    "datapoints",
    "decompose_together",
    "debiased_cka",
    "debiased_cka_from_moments",
    "linear_cka",
    "linear_cka_from_moments",
    "procrustes",
    "procrustes_from_moments",
    "pwcca",
    "pwcca_from_moments",
    "svcca",
    "svcca_from_moments",
]

RULES = ("singular_values", "variance")

# Rows per update in svcca()/cca(): bounds the float64 copy of one chunk
# (4096 x 768 x 8 B = 25 MB per side) without making the loop Python-bound.
_CHUNK_ROWS = 4096

# Below this many datapoints per neuron, canonical correlations are inflated
# (google/svcca's tutorial asks for 5-10x); at or below 1 they are all 1.
_MIN_DATAPOINTS_PER_NEURON = 5


class FewDatapointsWarning(UserWarning):
    """Fewer than 5 datapoints per neuron: canonical correlations are biased upwards."""


@dataclass(frozen=True)
class SVCCAResult:
    """One SVCCA comparison.

    ``rho`` holds the min(k_x, k_y) canonical correlations, descending, in [0, 1].
    ``rule`` is "singular_values", "variance" or "fixed" (k given by the caller;
    ``threshold`` is then NaN because no threshold was used).
    """

    distance: float
    similarity: float
    rho: np.ndarray
    k_x: int
    k_y: int
    rule: str
    threshold: float
    n: int


@dataclass(frozen=True)
class CCAResult:
    """Plain CCA over the numerical ranks: ``rho`` has min(rank_x, rank_y) entries."""

    similarity: float
    rho: np.ndarray
    rank_x: int
    rank_y: int
    n: int


def _checked_batch(x, y, dx: int | None, dy: int | None, earlier: torch.Tensor | None):
    """``x`` (n, dx) and ``y`` (n, dy) as detached tensors, after the checks every streamed batch gets.

    ``dx``, ``dy``: the widths of earlier batches (None before the first); ``earlier``:
    a tensor on the device the sums live on (None before the first non-empty batch).
    """
    x = _as_tensor(x).detach()
    y = _as_tensor(y).detach()
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            "x and y must be 2-D (datapoints x neurons) with the same number of rows; "
            f"got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    if x.device != y.device:
        raise ValueError(f"x is on {x.device} but y is on {y.device}; put both on one device")
    if dx is not None and (x.shape[1], y.shape[1]) != (dx, dy):
        raise ValueError(
            f"widths changed between batches: earlier batches had dx={dx}, "
            f"dy={dy}; this one has x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    if x.shape[0] and earlier is not None and x.device != earlier.device:
        raise ValueError(f"batch is on {x.device} but earlier batches were accumulated on {earlier.device}")
    return x, y


class Datapoints:
    """One side's datapoints of one batch, ``x`` (n, d), and the float64 sums of them that :class:`CrossMoments` adds.

    A model in several comparisons gives one Datapoints per layer and batch
    (``Capture.derived``): its sum and X^T X, about an offset and onto earlier sums, are
    computed for the first comparison that asks and reused by the others; they are the
    numbers each comparison would compute, bit for bit, as every comparison of a model
    sees the same batches and so holds the same sums of that model.
    """

    def __init__(self, x) -> None:
        self.x = _as_tensor(x).detach()
        self._sums: dict[tuple[int, int], tuple] = {}

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @functools.cached_property
    def shift(self) -> torch.Tensor:
        """The offset of sums that start with this batch: its first datapoint, float64."""
        return self.x[0].to(torch.float64)

    def rows(self, shift: torch.Tensor) -> torch.Tensor:
        """The datapoints minus ``shift``, float64 (n, d)."""
        return self.x.to(torch.float64) - shift

    def sums(self, shift: torch.Tensor, earlier: tuple[torch.Tensor, torch.Tensor] | None,
             rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum, X^T X) of the rows about ``shift`` added to ``earlier`` (None: zeros); new tensors, once per pair.

        ``rows``: ``self.rows(shift)`` when the caller has it already.
        """
        key = (id(shift), id(earlier[1]) if earlier else 0)
        if key not in self._sums:
            rows = self.rows(shift) if rows is None else rows
            total, gram = earlier or (torch.zeros_like(shift), rows.new_zeros(rows.shape[1], rows.shape[1]))
            # shift and earlier are kept with the sums: their ids stay theirs while the key is used
            self._sums[key] = (total + rows.sum(dim=0), torch.addmm(gram, rows.T, rows), shift, earlier)
        return self._sums[key][:2]

    def equals(self, other: Datapoints) -> bool:
        """Whether both hold the same values (in float64)."""
        a, b = self.x, other.x
        return a.shape == b.shape and (torch.equal(a, b) if a.dtype == b.dtype else
                                       torch.equal(a.to(torch.float64), b.to(torch.float64)))


class PooledSums:
    """Streamed float64 sums over datapoints that pool by weighted addition: the base of :class:`CrossMoments`
    and :class:`HSICMoments`, so that both pool, and pool replicates in bulk, by one algorithm.

    A subclass keeps its sums about per-side offsets and says how to re-express a part about
    another part's offsets (``_align``), which sums a pool adds (``_summed``) and what a pool
    copies from the first part (``_adopt``).
    """

    identical: bool
    _n: int

    @property
    def n(self) -> int:
        """Number of datapoints (rows) seen so far."""
        return self._n

    def _align(self, parts: list, identical: bool) -> None:
        """Re-express the filled ``parts`` about the first one's offsets, in place (exact algebra in float64)."""
        raise NotImplementedError

    def _summed(self, identical: bool) -> tuple[str, ...]:
        """The names of the sums a pool adds up."""
        raise NotImplementedError

    def _adopt(self, first, identical: bool) -> None:
        """Take the offsets (and widths) of ``first``, a part the pool's sums are expressed about."""
        raise NotImplementedError

    _frozen = False

    @classmethod
    def _empty_like(cls, parts: list):
        pooled = cls()
        pooled._dx, pooled._dy = (parts[0]._dx, parts[0]._dy) if parts else (None, None)
        return pooled

    @classmethod
    def _aligned(cls, parts: list):
        """(the filled parts, aligned about the first one's offsets; whether every part had x == y)."""
        filled = [part for part in parts if part.n]
        identical = all(part.identical for part in filled)
        if filled:
            filled[0]._align(filled, identical)
        return filled, identical

    @classmethod
    def pooled(cls, parts: list, weights: list[int]):
        """The sums of every part's datapoints, part i counted ``weights[i]`` times.

        Parts are first re-expressed, in place, about the first part's offsets (exact
        algebra in float64; what a part measures does not change), so pooling the
        same parts again is one weighted sum.
        """
        pooled = cls._empty_like(parts)
        used = [(part, w) for part, w in zip(parts, weights, strict=True) if w and part.n]
        if not used:
            return pooled
        filled, identical = cls._aligned(parts)
        pooled._adopt(filled[0], identical)
        for name in pooled._summed(identical):
            total = torch.zeros_like(getattr(filled[0], name))
            for part, weight in used:  # add_ with alpha: one pass over memory per part, no temporary
                total.add_(getattr(part, name), alpha=weight)
            setattr(pooled, name, total)
        pooled._n = sum(w * part.n for part, w in used)
        return pooled

    @classmethod
    def pooled_many(cls, parts: list, weights) -> list:
        """:meth:`pooled` for every row of ``weights`` (replicates x parts) at once: each sum of
        the replicates is one matrix product of the weights with the parts' stacked sums.

        The bootstrap's replicates (docs/reference.md); equal to :meth:`pooled` row by row up to
        the order of the float64 additions.
        """
        weights = np.asarray(weights, dtype=np.int64).reshape(-1, len(parts))
        filled, identical = cls._aligned(parts)
        counts = np.array([part.n for part in parts], dtype=np.int64)
        pools = [cls._empty_like(parts) for _ in weights]
        if not filled:
            return pools
        used = [i for i, part in enumerate(parts) if part.n]
        first = filled[0]
        matrix = torch.as_tensor(weights[:, used], dtype=torch.float64, device=getattr(first, first._summed(identical)[0]).device)
        sums = {name: torch.tensordot(matrix, torch.stack([getattr(part, name) for part in filled]), dims=1)
                for name in first._summed(identical)}
        for r, pooled in enumerate(pools):
            n = int(weights[r] @ counts)
            if n == 0:
                continue
            pooled._adopt(first, identical)
            for name, stacked in sums.items():
                setattr(pooled, name, stacked[r])
            pooled._n = n
            pooled._frozen = True
        return pools


class CrossMoments(PooledSums):
    """Streaming sufficient statistics of paired activations X (n x dx) and Y (n x dy).

    Each :meth:`update` adds one batch of rows. Sums are float64 on the device of
    the first batch, taken of values shifted by a per-neuron offset: BERT has
    neurons whose mean is orders of magnitude larger than their spread, and
    unshifted sums of squares would cancel that spread away. The offset is the
    first datapoint rather than the first batch's mean: it is as close to the
    mean in units of the spread, and it makes a constant neuron exactly 0 (a
    computed mean can be an ulp off), so an all-constant layer has rank exactly 0.

    ``identical`` stays True while every batch had x exactly equal to y; then
    only the X sums are kept (Y's would be the same numbers) and SVCCA returns
    distance exactly 0.
    """

    def __init__(self) -> None:
        self.identical = True
        self._n = 0
        self._dx: int | None = None
        self._dy: int | None = None
        self._shift_x: torch.Tensor | None = None
        self._shift_y: torch.Tensor | None = None
        self._sx: torch.Tensor | None = None
        self._sxx: torch.Tensor | None = None
        # None while identical: Y's sums equal X's until the first differing batch.
        self._sy: torch.Tensor | None = None
        self._syy: torch.Tensor | None = None
        self._sxy: torch.Tensor | None = None
        self._frozen = False  # a replicate pooled in bulk: nothing is added to it
        self._covariances: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def dx(self) -> int | None:
        """Width of X, or None before the first update."""
        return self._dx

    @property
    def dy(self) -> int | None:
        """Width of Y, or None before the first update."""
        return self._dy

    def update(self, x, y) -> None:
        """Add a batch: ``x`` (n_batch x dx) and ``y`` (n_batch x dy), same rows in the same order.

        Torch tensors of any float dtype on any (one) device; numpy arrays are accepted too.
        """
        x, y = _checked_batch(x, y, self._dx, self._dy, self._shift_x)
        self.add(Datapoints(x), Datapoints(y))

    def add(self, x: Datapoints, y: Datapoints) -> None:
        """:meth:`update` with each side's batch as :class:`Datapoints`: a model's own sums computed once for all its comparisons.

        The sums are never changed in place but replaced by new ones each batch (so
        several CrossMoments may hold the same tensors); only X^T Y is per pair.
        """
        _checked_batch(x.x, y.x, self._dx, self._dy, self._shift_x)
        if self._dx is None:
            self._dx, self._dy = x.x.shape[1], y.x.shape[1]
        if x.n == 0:
            return
        same = self.identical and (x is y or x.equals(y))
        if self._n == 0:
            self._shift_x = x.shift
            self._shift_y = self._shift_x if same else y.shift
        elif self.identical and not same:
            self._sy, self._syy = self._sx, self._sxx
            self._sxy = self._sxx.clone()
        self.identical = same

        xs = x.rows(self._shift_x)
        earlier = None if self._sx is None else (self._sx, self._sxx)
        self._sx, self._sxx = x.sums(self._shift_x, earlier, rows=xs)
        if not same:
            ys = y.rows(self._shift_y)
            earlier = None if self._sy is None else (self._sy, self._syy)
            self._sy, self._syy = y.sums(self._shift_y, earlier, rows=ys)
            if self._sxy is None:
                self._sxy = xs.new_zeros(self._dx, self._dy)
            self._sxy.addmm_(xs.T, ys)
        self._n += x.n

    def _align(self, parts: list[CrossMoments], identical: bool) -> None:
        for part in parts:
            part._rebase(self._shift_x, self._shift_y, keep_y=not identical)

    def _summed(self, identical: bool) -> tuple[str, ...]:
        return ("_sx", "_sxx") if identical else ("_sx", "_sxx", "_sy", "_syy", "_sxy")

    def _adopt(self, first: CrossMoments, identical: bool) -> None:
        self.identical = identical
        self._shift_x, self._shift_y = first._shift_x, first._shift_y

    def block(self, x_columns: slice, y_columns: slice) -> CrossMoments:
        """The moments of X's ``x_columns`` against Y's ``y_columns`` (views of these sums, no copy).

        A cross-layer metric streams every layer side by side, (datapoints, layers x hidden),
        in one CrossMoments; the block of layer i of X and layer j of Y is that pair's moments.
        """
        block = CrossMoments()
        block._n = self._n
        block._dx = len(range(self._dx)[x_columns])
        block._dy = len(range(self._dy)[y_columns])
        if self._n == 0:
            return block
        sx, sxx, sy, syy, sxy, shift_y = self._y_sums()
        block.identical = self.identical and x_columns == y_columns
        block._shift_x, block._sx, block._sxx = self._shift_x[x_columns], sx[x_columns], sxx[x_columns, x_columns]
        block._shift_y = block._shift_x if block.identical else shift_y[y_columns]
        if not block.identical:
            block._sy, block._syy, block._sxy = sy[y_columns], syy[y_columns, y_columns], sxy[x_columns, y_columns]
        return block

    def _y_sums(self):
        """(sx, sxx, sy, syy, sxy, shift_y), with Y's sums spelled out while they equal X's."""
        if self.identical:
            return self._sx, self._sxx, self._sx, self._sxx, self._sxx, self._shift_x
        return self._sx, self._sxx, self._sy, self._syy, self._sxy, self._shift_y

    def _rebase(self, shift_x: torch.Tensor, shift_y: torch.Tensor, keep_y: bool) -> None:
        """Re-express the sums about new offsets; ``keep_y`` spells out Y's sums while they equal X's.

        Out of place: the sums may be inference tensors (a metric that updates under
        torch.inference_mode), which refuse in-place updates outside it.
        """
        if keep_y and self._sy is None:
            self._sy, self._syy, self._sxy = self._sx.clone(), self._sxx.clone(), self._sxx.clone()
        if shift_x is not self._shift_x:
            dx = self._shift_x - shift_x  # (dx,)
            if self._sxy is not None:
                self._sxy = self._sxy + torch.outer(dx, self._sy)
            self._sxx = self._sxx + torch.outer(dx, self._sx) + torch.outer(self._sx, dx) + self._n * torch.outer(dx, dx)
            self._sx = self._sx + self._n * dx
            self._shift_x = shift_x
        if self._sy is not None and shift_y is not self._shift_y:
            dy = self._shift_y - shift_y  # (dy,)
            self._sxy = self._sxy + torch.outer(self._sx, dy)
            self._syy = self._syy + torch.outer(dy, self._sy) + torch.outer(self._sy, dy) + self._n * torch.outer(dy, dy)
            self._sy = self._sy + self._n * dy
        self._shift_y = shift_y

    def covariances(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample covariances (ddof = 1, like np.cov): cxx (dx x dx), cyy (dy x dy), cxy (dx x dy).

        float64, on the device the batches came from.
        """
        if self._covariances is not None:
            return self._covariances
        if self._n < 2:
            raise ValueError(f"covariances need at least 2 datapoints; got n={self._n}")
        n = self._n
        mx = self._sx / n
        cxx = (self._sxx - n * torch.outer(mx, mx)) / (n - 1)
        # GEMM does not promise a bit-symmetric xs.T @ xs, and eigh reads one triangle only.
        cxx = (cxx + cxx.T) / 2
        if self.identical:
            cyy, cxy = cxx.clone(), cxx.clone()
        else:
            my = self._sy / n
            cyy = (self._syy - n * torch.outer(my, my)) / (n - 1)
            cyy = (cyy + cyy.T) / 2
            cxy = (self._sxy - n * torch.outer(mx, my)) / (n - 1)
        # Checked once here instead of per batch: NaN/inf inputs reach every sum.
        if not all(torch.isfinite(c).all() for c in (cxx, cyy, cxy)):
            raise ValueError("activations contain NaN or infinite values")
        if self._frozen:  # a pool: its sums never change, and decompose_together and the metric both read these
            self._covariances = (cxx, cyy, cxy)
        return cxx, cyy, cxy

    def cross_covariance_and_traces(self) -> tuple[torch.Tensor, float, float]:
        """Cxy (dx x dy, ddof = 1), tr Cxx and tr Cyy, float64 (what the Procrustes distance needs)."""
        cxx, cyy, cxy = self.covariances()
        return cxy, float(torch.trace(cxx)), float(torch.trace(cyy))


class CrossProducts(PooledSums):
    """Streaming sums from which the orthogonal Procrustes distance is exact: X^T Y and each side's
    sum and sum of squared norms (the traces of the covariances), not X^T X and Y^T Y.

    One d_x x d_y product per batch instead of three; offsets and pooling as :class:`CrossMoments`.
    ``identical`` stays True while every batch had x exactly equal to y.
    """

    def __init__(self) -> None:
        self.identical = True
        self._n = 0
        self._dx: int | None = None
        self._dy: int | None = None
        self._shift_x: torch.Tensor | None = None
        self._shift_y: torch.Tensor | None = None
        self._sx = self._sy = self._sxy = self._qx = self._qy = None

    @property
    def dx(self) -> int | None:
        return self._dx

    @property
    def dy(self) -> int | None:
        return self._dy

    def update(self, x, y) -> None:
        """Add a batch: ``x`` (n_batch x dx) and ``y`` (n_batch x dy), same rows in the same order."""
        x, y = _checked_batch(x, y, self._dx, self._dy, self._shift_x)
        self.add(Datapoints(x), Datapoints(y))

    def add(self, x: Datapoints, y: Datapoints) -> None:
        """:meth:`update` with each side's batch as :class:`Datapoints`."""
        _checked_batch(x.x, y.x, self._dx, self._dy, self._shift_x)
        if self._dx is None:
            self._dx, self._dy = x.x.shape[1], y.x.shape[1]
        if x.n == 0:
            return
        self.identical = self.identical and (x is y or x.equals(y))
        if self._n == 0:
            self._shift_x, self._shift_y = x.shift, y.shift
        xs, ys = x.rows(self._shift_x), y.rows(self._shift_y)
        if self._sxy is None:
            self._sxy = xs.new_zeros(self._dx, self._dy)
            self._sx, self._sy = xs.new_zeros(self._dx), ys.new_zeros(self._dy)
            self._qx, self._qy = xs.new_zeros(()), ys.new_zeros(())
        self._sxy = torch.addmm(self._sxy, xs.T, ys)
        self._sx, self._sy = self._sx + xs.sum(dim=0), self._sy + ys.sum(dim=0)
        self._qx, self._qy = self._qx + xs.square().sum(), self._qy + ys.square().sum()
        self._n += x.n

    def _align(self, parts: list[CrossProducts], identical: bool) -> None:
        for part in parts:
            part._rebase(self._shift_x, self._shift_y)

    def _summed(self, identical: bool) -> tuple[str, ...]:
        return ("_sx", "_sy", "_sxy", "_qx", "_qy")

    def _adopt(self, first: CrossProducts, identical: bool) -> None:
        self.identical = identical
        self._shift_x, self._shift_y = first._shift_x, first._shift_y

    def _rebase(self, shift_x: torch.Tensor, shift_y: torch.Tensor) -> None:
        """Re-express the sums about new offsets (out of place: the sums may be inference tensors)."""
        if shift_x is self._shift_x and shift_y is self._shift_y:
            return
        dx, dy, n = self._shift_x - shift_x, self._shift_y - shift_y, self._n
        self._sxy = self._sxy + torch.outer(dx, self._sy) + torch.outer(self._sx, dy) + n * torch.outer(dx, dy)
        self._qx = self._qx + 2 * dx @ self._sx + n * dx @ dx
        self._qy = self._qy + 2 * dy @ self._sy + n * dy @ dy
        self._sx, self._sy = self._sx + n * dx, self._sy + n * dy
        self._shift_x, self._shift_y = shift_x, shift_y

    def cross_covariance_and_traces(self) -> tuple[torch.Tensor, float, float]:
        """Cxy (dx x dy, ddof = 1), tr Cxx and tr Cyy, float64."""
        if self._n < 2:
            raise ValueError(f"covariances need at least 2 datapoints; got n={self._n}")
        n = self._n
        mx, my = self._sx / n, self._sy / n
        cxy = (self._sxy - n * torch.outer(mx, my)) / (n - 1)
        traces = [float((q - n * m @ m) / (n - 1)) for q, m in ((self._qx, mx), (self._qy, my))]
        if not (torch.isfinite(cxy).all() and all(math.isfinite(t) for t in traces)):
            raise ValueError("activations contain NaN or infinite values")
        return cxy, traces[0], traces[1]


class HSICMoments(PooledSums):
    """Streaming sums from which the unbiased HSIC of linear kernels is exact (debiased CKA).

    For datapoints x_i (dx) and y_i (dy), with shifted values x'_i = x_i - c_x and
    y'_i = y_i - c_y, it keeps, in float64 on the device of the first batch:

    * M = sum_i z_i z_i^T with z_i = [x'_i, y'_i, 1]: X'^T X', Y'^T Y', X'^T Y', the sums
      of X' and Y', and n;
    * V = sum_i z_i q_i^T and Q = sum_i q_i q_i^T with q_i = [|x'_i|^2, |y'_i|^2]: the
      fourth-order sums (sum_i x'_i |y'_i|^2, sum_i |x'_i|^2 |y'_i|^2, ...) that the
      estimator needs beyond M.

    Memory is O((dx + dy)^2) whatever n. The offsets c are each side's first datapoint, as
    in :class:`CrossMoments` (BERT neurons' means dwarf their spread). They do not change
    the estimator: a shift adds terms of the form a_i + a_j + const to a linear kernel,
    and the U-centring inside the unbiased HSIC (Szekely & Rizzo 2014) removes them.

    ``identical`` stays True while every batch had x exactly equal to y; z and q then
    hold X's side only, and debiased CKA is exactly 1.
    """

    def __init__(self) -> None:
        self.identical = True
        self._joint = False  # whether Y's side is stored (it is not while it equals X's)
        self._n = 0
        self._dx: int | None = None
        self._dy: int | None = None
        self._shift: torch.Tensor | None = None  # (D - 1,): c_x, then c_y when joint
        self._m: torch.Tensor | None = None  # (D, D)
        self._v: torch.Tensor | None = None  # (D, sides)
        self._q: torch.Tensor | None = None  # (sides, sides)

    def update(self, x, y) -> None:
        """Add a batch: ``x`` (n_batch x dx) and ``y`` (n_batch x dy), same rows in the same order."""
        x, y = _checked_batch(x, y, self._dx, self._dy, self._shift)
        if self._dx is None:
            self._dx, self._dy = x.shape[1], y.shape[1]
        if x.shape[0] == 0:
            return
        x = x.to(torch.float64)
        y = y.to(torch.float64)
        same = self.identical and x.shape == y.shape and torch.equal(x, y)
        if self._n == 0:
            self._joint = not same
            self._shift = torch.cat([x[0], y[0]]) if self._joint else x[0].clone()
            width, sides = len(self._shift) + 1, len(self._slices())
            self._m = x.new_zeros(width, width)
            self._v = x.new_zeros(width, sides)
            self._q = x.new_zeros(sides, sides)
        elif not same and not self._joint:
            self._spell_out_y()
        self.identical = same
        shifted = (torch.cat([x, y], dim=1) if self._joint else x) - self._shift  # (n_batch, D - 1)
        z = torch.cat([shifted, shifted.new_ones(len(shifted), 1)], dim=1)  # (n_batch, D)
        q = torch.stack([shifted[:, rows].square().sum(dim=1) for rows in self._slices()], dim=1)  # (n_batch, sides)
        self._m.addmm_(z.T, z)
        self._v.addmm_(z.T, q)
        self._q.addmm_(q.T, q)
        self._n += x.shape[0]

    def add(self, x: Datapoints, y: Datapoints) -> None:
        """:meth:`update` with each side's batch as :class:`Datapoints`."""
        self.update(x.x, y.x)

    def _align(self, parts: list[HSICMoments], identical: bool) -> None:
        for part in parts:
            if not identical and not part._joint:
                part._spell_out_y()
        for part in parts:
            part._rebase(self._shift)

    def _summed(self, identical: bool) -> tuple[str, ...]:
        return ("_m", "_v", "_q")

    def _adopt(self, first: HSICMoments, identical: bool) -> None:
        self.identical = identical
        self._joint = not identical
        self._shift = first._shift

    def hsic(self) -> tuple[float, float, float]:
        """The unbiased HSIC_1 (Song et al. 2012, eq. 5) of linear kernels: (X, X), (Y, Y), (X, Y).

        HSIC_1 = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)), with
        K~ = XX^T and L~ = YY^T with their diagonals zeroed, written in sums over datapoints:
        tr(K~L~) = ||X^T Y||^2 - sum_i |x_i|^2 |y_i|^2, 1'K~1 = |sum_i x_i|^2 - sum_i |x_i|^2, and
        1'K~L~1 = sum_i (x_i . Sx - |x_i|^2)(y_i . Sy - |y_i|^2) expanded into M, V and Q.
        ValueError below 4 datapoints.
        """
        if self._n < 4:
            raise ValueError(
                "debiased CKA needs at least 4 datapoints (the unbiased HSIC divides by n(n-3)); "
                f"got n={self._n}"
            )
        y = 1 if self._joint else 0
        return self._hsic(0, 0), self._hsic(y, y), self._hsic(0, y)

    def _hsic(self, a: int, b: int) -> float:
        """HSIC_1 of sides a and b (0: X, 1: Y) from the sums."""
        n, m, v, q = self._n, self._m, self._v, self._q
        rows_a, rows_b = self._slices()[a], self._slices()[b]
        cross = m[rows_a, rows_b]  # (da, db): A'^T B'
        sum_a, sum_b = m[rows_a, -1], m[rows_b, -1]  # (da,), (db,)
        trace = cross.square().sum() - q[a, b]
        ones_k = sum_a @ sum_a - v[-1, a]
        ones_l = sum_b @ sum_b - v[-1, b]
        ones_kl = sum_a @ cross @ sum_b - sum_a @ v[rows_a, b] - sum_b @ v[rows_b, a] + q[a, b]
        return float(trace + ones_k * ones_l / ((n - 1) * (n - 2)) - 2 * ones_kl / (n - 2)) / (n * (n - 3))

    def _slices(self) -> list[slice]:
        """Where each stored side's shifted values sit in z."""
        if not self._joint:
            return [slice(0, self._dx)]
        return [slice(0, self._dx), slice(self._dx, self._dx + self._dy)]

    def _spell_out_y(self) -> None:
        """Store Y's side, which equalled X's until now: z = [x', x', 1], q = [|x'|^2, |x'|^2]."""
        index = torch.cat([torch.arange(self._dx), torch.arange(self._dx + 1)]).to(self._m.device)  # (D,)
        both = [0, 0]
        self._m, self._v, self._q = self._m[index][:, index], self._v[index][:, both], self._q[both][:, both]
        self._shift = self._shift.repeat(2)
        self._joint = True

    def _rebase(self, shift: torch.Tensor) -> None:
        """Re-express the sums about new offsets ``shift`` (D - 1,), in place.

        With t = old - new offsets, z becomes T z (T = I + (t, 0) e_last^T) and q becomes
        q + W^T z (W: 2t and |t|^2 per side), so M -> T M T^T, V -> T (V + M W) and
        Q -> Q + W^T V + V^T W + W^T M W: rank-one updates, O(D^2).
        """
        if shift is self._shift:
            return
        offset = self._shift - shift  # (D - 1,)
        w = offset.new_zeros(len(offset) + 1, len(self._slices()))  # (D, sides)
        for side, rows in enumerate(self._slices()):
            w[rows, side] = 2 * offset[rows]
            w[-1, side] = offset[rows].square().sum()
        # Q and V first: each reads the M and V from before the change.
        self._q += w.T @ self._v + self._v.T @ w + w.T @ self._m @ w
        self._v += self._m @ w
        self._v[:-1] += torch.outer(offset, self._v[-1])
        self._m[:-1] += torch.outer(offset, self._m[-1])
        self._m[:, :-1] += torch.outer(self._m[:, -1], offset)
        self._shift = shift


@dataclass(frozen=True)
class _Spectrum:
    """Eigen-decomposition of a covariance, descending; sub-tolerance eigenvalues set to 0."""

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    rank: int


@contextlib.contextmanager
def _one_thread():
    """Run a d x d LAPACK call on one CPU thread.

    Measured on the 2-core development machine (docs/performance.md, bench_svcca
    --decompositions): float64 eigh at d = 384 took 17-36 ms on one MKL thread and
    40 ms to 6.6 s on two, depending on what else ran; at d = 1024 two threads won
    only on an idle machine (0.18 s against 0.32 s) and lost 2.8 s to 0.53 s on a
    busy one. One thread is never far from the best and never pathological.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _spectrum(cov: torch.Tensor, side: str) -> _Spectrum:
    # The d x d decompositions run on CPU: they cost O(d^3) once, independent of
    # n, and float64 eigensolvers are slow or missing on many accelerators.
    with _one_thread():
        lam, vec = torch.linalg.eigh(cov.cpu())
    return _descending(cov.shape[0], lam, vec, side)


def _descending(width: int, lam: torch.Tensor, vec: torch.Tensor, side: str) -> _Spectrum:
    """The spectrum of eigh's ascending ``lam``, ``vec`` of a ``width`` x ``width`` covariance."""
    lam = lam.flip(0).clamp_min(0.0)
    vec = vec.flip(1)
    # eigh of a covariance resolves eigenvalues only to about eps * lambda_max
    # (exact duplicate neurons measured up to 1.1 eps * lambda_max); the width,
    # floored at 16, leaves a margin even for narrow inputs.
    tol = max(width, 16) * torch.finfo(torch.float64).eps * lam[0]
    lam = torch.where(lam > tol, lam, 0.0)
    rank = int((lam > 0).sum())
    if rank == 0:
        raise ValueError(
            f"{side} has numerical rank 0: every neuron is constant over the datapoints "
            "(e.g. an all-zero layer), so CCA is undefined"
        )
    return _Spectrum(lam, vec, rank)


#: Covariance spectra by the covariance's content (a digest of its float64 bytes), most recently used
#: last. The same covariance recurs: comparisons sharing a model hold the same sums of it
#: (Datapoints.sums) and see the same bootstrap replicates of it (the same deal and weights), and
#: SVCCA, PWCCA and CCA of one comparison the same moments (Metric.take_state), so each is decomposed
#: once while it stays here. Bounded by :data:`SPECTRUM_MEMO_BYTES`.
_SPECTRA: OrderedDict[tuple, _Spectrum] = OrderedDict()

#: What the spectra kept for reuse may hold (float64 eigenvectors: 1.2 MB at d = 384, 8.4 MB at d = 1024).
SPECTRUM_MEMO_BYTES = 256 * 2**20


def _content_key(cov: torch.Tensor) -> tuple:
    digest = hashlib.blake2b(cov.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).digest()
    return tuple(cov.shape), digest


def _remember(key: tuple, spectrum: _Spectrum) -> None:
    _SPECTRA[key] = spectrum
    held = sum(8 * (s.eigenvectors.numel() + s.eigenvalues.numel()) for s in _SPECTRA.values())
    while held > SPECTRUM_MEMO_BYTES and len(_SPECTRA) > 1:
        _, gone = _SPECTRA.popitem(last=False)
        held -= 8 * (gone.eigenvectors.numel() + gone.eigenvalues.numel())


def _spectra(cxx: torch.Tensor, cyy: torch.Tensor) -> tuple[_Spectrum, _Spectrum]:
    """The spectra of covariances ``cxx`` and ``cyy``, each decomposed once while it is remembered."""
    spectra = []
    for cov, side in ((cxx, "X"), (cyy, "Y")):
        key = _content_key(cov)
        if key in _SPECTRA:
            _SPECTRA.move_to_end(key)
        else:
            _remember(key, _spectrum(cov, side))
        spectra.append(_SPECTRA[key])
    return spectra[0], spectra[1]


def decompose_together(pools: list[CrossMoments]) -> None:
    """Decompose the covariances of many moments (a layer's bootstrap replicates) in one batched float64
    ``eigh`` per width, on the device the sums live on, ahead of the metric that reads them.

    The spectra are remembered by content, so :func:`svcca_from_moments`, :func:`pwcca_from_moments` and
    :func:`cca_from_moments` of these moments then decompose nothing; moments whose covariances fail
    (too few datapoints, NaN) are left to those functions, which say why.
    """
    pending: dict[tuple, torch.Tensor] = {}
    for moments in pools:
        if moments.n < 2 or moments.dx is None:
            continue
        try:
            cxx, cyy, _ = moments.covariances()
        except ValueError:
            continue
        for cov in (cxx, cyy):
            key = _content_key(cov)
            if key not in _SPECTRA:
                pending.setdefault(key, cov)
    by_width: dict[tuple, list[tuple]] = {}
    for key, cov in pending.items():
        by_width.setdefault((cov.shape[0], cov.device), []).append(key)
    for (width, _), keys in by_width.items():
        with _one_thread():
            lam, vec = torch.linalg.eigh(torch.stack([pending[key] for key in keys]))
        lam, vec = lam.cpu(), vec.cpu()
        for i, key in enumerate(keys):
            with contextlib.suppress(ValueError):  # rank 0: the metric raises it with its context
                _remember(key, _descending(width, lam[i], vec[i], "X"))


def _check_datapoints(n: int, dx: int | None, dy: int | None) -> None:
    if dx is None or dy is None:
        raise ValueError("no activations were added: call CrossMoments.update first")
    d = max(dx, dy)
    if n <= d:
        raise ValueError(
            f"n={n} datapoints for d={d} neurons: CCA is meaningless with at most one datapoint "
            "per neuron (every canonical correlation goes to 1). Use more examples or tokens: "
            f"at least {_MIN_DATAPOINTS_PER_NEURON * d} (5 per neuron) for a trustworthy value."
        )
    if n < _MIN_DATAPOINTS_PER_NEURON * d:
        warnings.warn(
            FewDatapointsWarning(
                f"n={n} datapoints for d={d} neurons is fewer than 5 per neuron "
                f"(< {_MIN_DATAPOINTS_PER_NEURON * d}): canonical correlations are biased "
                "upwards; use more examples or tokens"
            ),
            stacklevel=3,
        )


def _choose_k(spec: _Spectrum, rule: str, threshold: float) -> int:
    lam = spec.eigenvalues[: spec.rank]
    # Covariance eigenvalues are s^2 / (n - 1): sqrt gives singular values up to a common scale.
    values = lam.sqrt() if rule == "singular_values" else lam
    ratio = values.cumsum(0) / values.sum()
    # Smallest k with ratio[k-1] >= threshold; the cap covers threshold=1 when the
    # last cumulative ratio rounds to just below 1.
    return min(spec.rank, int((ratio < threshold).sum()) + 1)


def _canonical_correlations(
    sx: _Spectrum, sy: _Spectrum, cxy: torch.Tensor, kx: int, ky: int
) -> np.ndarray:
    wx = sx.eigenvectors[:, :kx] / sx.eigenvalues[:kx].sqrt()
    wy = sy.eigenvectors[:, :ky] / sy.eigenvalues[:ky].sqrt()
    m = wx.T @ cxy.cpu() @ wy
    with _one_thread():
        return torch.linalg.svdvals(m).clamp(0.0, 1.0).numpy()


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def svcca_from_moments(
    moments: CrossMoments,
    *,
    rule: str = "singular_values",
    threshold: float = 0.99,
    k: int | None = None,
) -> SVCCAResult:
    """SVCCA distance from streamed moments.

    Truncation keeps, per side, the top-k eigen-directions of the covariance
    (= the top-k right singular vectors of the centred data):

    * ``rule="singular_values"`` (default, google/svcca's): smallest k whose
      cumulative sum of singular values reaches ``threshold`` of their total;
    * ``rule="variance"``: the same with squared singular values (variance);
    * ``k=<int>``: that k on both sides (``rule`` is then recorded as "fixed");
      an error if k exceeds a side's width or numerical rank.

    k never exceeds the numerical rank: eigenvalues at or below
    max(d, 16) * eps * lambda_max count as 0. Canonical correlations come from
    the SVD of the whitened cross-covariance of the kept directions, with no
    regularisation; similarity is their plain mean over min(k_x, k_y),
    distance = 1 - similarity.

    Raises ValueError for n <= max(dx, dy) datapoints or a side of rank 0; warns
    :class:`FewDatapointsWarning` below 5 datapoints per neuron.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}; got {rule!r}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold}")
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise ValueError(f"k must be a positive integer or None; got {k!r}")
    n = moments.n
    _check_datapoints(n, moments.dx, moments.dy)
    cxx, cyy, cxy = moments.covariances()
    spec_x, spec_y = _spectra(cxx, cyy)

    if k is None:
        kx = _choose_k(spec_x, rule, threshold)
        ky = _choose_k(spec_y, rule, threshold)
    else:
        k = int(k)
        for side, width, spec in (("X", moments.dx, spec_x), ("Y", moments.dy, spec_y)):
            if k > width:
                raise ValueError(f"k={k} exceeds the width of {side} ({width} neurons)")
            if k > spec.rank:
                raise ValueError(
                    f"k={k} exceeds the numerical rank of {side} ({spec.rank} of {width} neurons)"
                )
        kx = ky = k
        rule, threshold = "fixed", math.nan

    if moments.identical:
        rho = np.ones(min(kx, ky))
    else:
        rho = _canonical_correlations(spec_x, spec_y, cxy, kx, ky)
    similarity = float(rho.mean())
    return SVCCAResult(
        distance=1.0 - similarity,
        similarity=similarity,
        rho=_frozen(rho),
        k_x=kx,
        k_y=ky,
        rule=rule,
        threshold=float(threshold),
        n=n,
    )


def cca_from_moments(moments: CrossMoments) -> CCAResult:
    """Plain CCA (no truncation) from streamed moments.

    Rank convention: each side keeps all directions of its numerical rank
    (covariance eigenvalues above max(d, 16) * eps * lambda_max), and similarity
    is the mean over min(rank_x, rank_y) canonical correlations, not over
    min(width_x, width_y): duplicated or constant neurons add no spurious
    zero (or one) correlations. Same datapoint rules as :func:`svcca_from_moments`.
    """
    n = moments.n
    _check_datapoints(n, moments.dx, moments.dy)
    cxx, cyy, cxy = moments.covariances()
    spec_x, spec_y = _spectra(cxx, cyy)
    if moments.identical:
        rho = np.ones(min(spec_x.rank, spec_y.rank))
    else:
        rho = _canonical_correlations(spec_x, spec_y, cxy, spec_x.rank, spec_y.rank)
    return CCAResult(
        similarity=float(rho.mean()), rho=_frozen(rho), rank_x=spec_x.rank, rank_y=spec_y.rank, n=n
    )


def _moments_of(x, y, kind: type = CrossMoments):
    """``x`` and ``y`` streamed in chunks into a new ``kind`` (:class:`CrossMoments` or :class:`HSICMoments`)."""
    x = _as_tensor(x)
    y = _as_tensor(y)
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(
            "x and y must be 2-D (datapoints x neurons) with the same number of rows; "
            f"got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    moments = kind()
    for start in range(0, max(x.shape[0], 1), _CHUNK_ROWS):
        moments.update(x[start : start + _CHUNK_ROWS], y[start : start + _CHUNK_ROWS])
    return moments


def svcca(
    x,
    y,
    *,
    rule: str = "singular_values",
    threshold: float = 0.99,
    k: int | None = None,
) -> SVCCAResult:
    """SVCCA between activations ``x`` (n x dx) and ``y`` (n x dy), numpy or torch.

    Rows are datapoints (the same ones, in the same order, on both sides),
    columns neurons. Streams the rows in chunks through :class:`CrossMoments`
    (float64 on the input's device); see :func:`svcca_from_moments` for the
    options and the rules on n. Identical inputs give distance exactly 0.
    """
    return svcca_from_moments(_moments_of(x, y), rule=rule, threshold=threshold, k=k)


def cca(x, y) -> CCAResult:
    """Plain CCA between ``x`` (n x dx) and ``y`` (n x dy); see :func:`cca_from_moments`."""
    return cca_from_moments(_moments_of(x, y))


def pwcca_from_moments(moments: CrossMoments) -> float:
    """PWCCA distance (Morcos et al. 2018) from streamed moments: 1 - sum_i alpha_i rho_i.

    CCA over each side's directions holding at least :data:`RESOLVED_VARIANCE` of its
    largest variance; the canonical correlations rho_i are weighted by how much of X's neurons each
    canonical variate h_i = X_c a_i accounts for: alpha_i proportional to
    sum_j |<h_i / ||h_i||, x_j>| over X's centred neurons x_j. From the moments that is
    sum_j |(Cxx A)_ji| (the variates have unit variance), so nothing but d x d
    matrices is needed. Unlike google/svcca's pwcca.py, the neurons are centred and
    X is always the weighting side (docs/reference.md).
    """
    _check_datapoints(moments.n, moments.dx, moments.dy)
    if moments.identical:
        return 0.0
    cxx, cyy, cxy = moments.covariances()
    spec_x, spec_y = _spectra(cxx, cyy)
    rank_x, rank_y = _resolved_rank(spec_x), _resolved_rank(spec_y)
    wx = spec_x.eigenvectors[:, :rank_x] / spec_x.eigenvalues[:rank_x].sqrt()
    wy = spec_y.eigenvectors[:, :rank_y] / spec_y.eigenvalues[:rank_y].sqrt()
    with _one_thread():
        u, rho, _ = torch.linalg.svd(wx.T @ cxy.cpu() @ wy, full_matrices=False)
    directions = wx @ u  # (dx, k): canonical weights a_i of X
    alpha = (cxx.cpu() @ directions).abs().sum(dim=0)
    return float(1.0 - (alpha * rho.clamp(0.0, 1.0)).sum() / alpha.sum())


#: PWCCA weights every canonical direction, so a direction of pure rounding noise (a
#: LayerNorm output has one: its neurons sum to a constant) would get a random weight and
#: make the value depend on how the rows were batched. Directions with less than this
#: share of the largest variance are below what float32 activations resolve: left out.
RESOLVED_VARIANCE = 1e-10


def _resolved_rank(spec: _Spectrum) -> int:
    return int((spec.eigenvalues[: spec.rank] > RESOLVED_VARIANCE * spec.eigenvalues[0]).sum())


def procrustes_from_moments(moments: CrossProducts | CrossMoments) -> float:
    """Orthogonal Procrustes distance of centred representations scaled to unit Frobenius norm.

    min over orthogonal Q of ||X/||X|| - Y Q/||Y|| ||_F^2 = 2 - 2 ||X^T Y||_* / (||X|| ||Y||),
    with X and Y centred (Ding et al. 2021's "Procrustes"); from the moments:
    2 - 2 ||Cxy||_* / sqrt(tr Cxx tr Cyy). 0 for identical inputs, at most 2. Defined for any
    n >= 2, also with fewer datapoints than neurons (unlike CCA, nothing is inverted).
    """
    if moments.dx is None or moments.dy is None:
        raise ValueError("no activations were added: call update first")
    cxy, trace_x, trace_y = moments.cross_covariance_and_traces()
    scale = math.sqrt(trace_x * trace_y)
    if scale == 0.0:
        raise ValueError("a side is constant over the datapoints (zero variance): the Procrustes distance is undefined")
    if moments.identical:
        return 0.0
    with _one_thread():
        nuclear = float(torch.linalg.svdvals(cxy.cpu()).sum())
    return max(0.0, 2.0 - 2.0 * nuclear / scale)


def pwcca(x, y) -> float:
    """PWCCA distance between ``x`` (n x dx) and ``y`` (n x dy); see :func:`pwcca_from_moments`."""
    return pwcca_from_moments(_moments_of(x, y))


def procrustes(x, y) -> float:
    """Procrustes distance between ``x`` (n x dx) and ``y`` (n x dy); see :func:`procrustes_from_moments`.

    Streams only X^T Y and each side's sums (:class:`CrossProducts`).
    """
    return procrustes_from_moments(_moments_of(x, y, CrossProducts))


def linear_cka_from_moments(moments: CrossMoments) -> float:
    """Linear CKA (Kornblith et al. 2019) of centred X and Y: ||Cxy||_F^2 / (||Cxx||_F ||Cyy||_F).

    Exact from the streamed moments (the 1 / (n - 1) factors cancel). A similarity in
    [0, 1], not clamped: rounding may put a value an ulp above 1. Exactly 1 for
    identical inputs; ValueError below 2 datapoints or when a side has zero variance,
    where CKA is 0 / 0 (also for identical inputs).
    """
    cxx, cyy, cxy = moments.covariances()
    scale = float(torch.linalg.matrix_norm(cxx) * torch.linalg.matrix_norm(cyy))
    if scale == 0.0:
        raise ValueError("a side is constant over the datapoints (zero variance): linear CKA is undefined")
    if moments.identical:
        return 1.0
    return float(cxy.square().sum()) / scale


def linear_cka(x, y) -> float:
    """Linear CKA between ``x`` (n x dx) and ``y`` (n x dy); see :func:`linear_cka_from_moments`."""
    return linear_cka_from_moments(_moments_of(x, y))


def debiased_cka_from_moments(moments: HSICMoments) -> float:
    """Debiased CKA (Nguyen et al. 2021): HSIC_1(X, Y) / sqrt(HSIC_1(X, X) HSIC_1(Y, Y)), linear kernels.

    HSIC_1 is the unbiased estimator of Song et al. (2012), exact from the streamed sums
    (:meth:`HSICMoments.hsic`). It is an inner product of U-centred Gram matrices, so the
    value lies in [-1, 1] (up to rounding; not clamped) and, unlike linear CKA, can be
    negative: near 0 for unrelated representations, where linear CKA is biased upwards
    with few datapoints per neuron. Exactly 1 for identical inputs. ValueError below 4
    datapoints, on NaN or infinite activations, and when HSIC_1(X, X) HSIC_1(Y, Y) <= 0
    (a side constant over the datapoints gives 0).
    """
    xx, yy, xy = moments.hsic()
    if not math.isfinite(xx * yy):
        raise ValueError("activations contain NaN or infinite values")
    if not xx * yy > 0:
        raise ValueError(
            f"debiased CKA is undefined: HSIC(X, X) = {xx:.3g} and HSIC(Y, Y) = {yy:.3g} must both be "
            "positive (a side constant over the datapoints gives 0)"
        )
    if moments.identical:
        return 1.0
    return xy / math.sqrt(xx * yy)


def debiased_cka(x, y) -> float:
    """Debiased CKA between ``x`` (n x dx) and ``y`` (n x dy); see :func:`debiased_cka_from_moments`."""
    return debiased_cka_from_moments(_moments_of(x, y, HSICMoments))


def _as_tensor(a, device: torch.device | None = None) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a if device is None else a.to(device)
    return torch.as_tensor(np.asarray(a), device=device)


def attention_js_per_example(
    p,
    q,
    attention_mask,
    *,
    base: float | None = None,
    query_mask=None,
    plogp: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Per-example, per-head JS divergence between two attention maps; (batch, heads) float64.

    ``p`` and ``q`` are attention probabilities (batch, heads, query, key) over the
    same tokens; ``attention_mask`` (batch, tokens) is nonzero for real tokens.
    For each example and head: the mean over its selected query tokens i of
    JS(p[b, h, i, :] || q[b, h, i, :]), where

        JS(P || Q) = 0.5 KL(P || M) + 0.5 KL(Q || M),  M = (P + Q) / 2,

    with 0 log 0 = 0, no epsilon, each row's value clamped at >= 0. Padded keys
    are left out of the sums (their mass is not renormalised away: a model gives
    them ~0 already); padded query rows are skipped. ``query_mask`` (batch, tokens)
    further restricts the averaged queries (it is intersected with
    ``attention_mask``), e.g. to exclude [CLS]/[SEP]. Natural log (max ln 2)
    unless ``base`` is given (base=2: bits, max 1).

    A row's value is sum_j [0.5 (p_j log p_j + q_j log q_j) - m_j log m_j]: each model's
    part is :func:`attention_row_plogp` of its map alone, so a model in several
    comparisons can compute it once and pass ``plogp`` = (p's, q's); only M's part
    is computed per pair.

    Raises ValueError if an example has no selected query token, or if the
    result is not finite (negative or NaN probabilities on real tokens).
    Runs on the inputs' device; identical p and q give exactly 0.
    """
    p = _as_tensor(p)
    q = _as_tensor(q, device=p.device)
    if p.dim() != 4 or p.shape != q.shape:
        raise ValueError(
            f"p and q must have the same shape (batch, heads, query, key); got {tuple(p.shape)} "
            f"and {tuple(q.shape)}"
        )
    keys = _keys_of(p, attention_mask)
    queries = keys
    if query_mask is not None:
        selected = _as_tensor(query_mask, device=p.device) != 0
        if selected.shape != keys.shape:
            raise ValueError(
                f"query_mask must have the shape of attention_mask {tuple(keys.shape)}; "
                f"got {tuple(selected.shape)}"
            )
        queries = keys & selected
    counts = queries.sum(dim=-1)
    empty = torch.nonzero(counts == 0).flatten().tolist()
    if empty:
        raise ValueError(
            f"examples {empty} have no selected query tokens; the per-example mean is undefined"
        )
    if base is not None and (base <= 0 or base == 1):
        raise ValueError(f"base must be positive and not 1; got {base}")

    if plogp is None:
        plogp = (_row_plogp(p.to(torch.float64, copy=True), keys), _row_plogp(q.to(torch.float64, copy=True), keys))
    m = p.to(torch.float64, copy=True).add_(q).mul_(0.5)  # float64 (p + q) / 2, bit for bit p where q == p
    per_row = (0.5 * (plogp[0] + plogp[1]) - _row_plogp(m, keys)).clamp_min(0.0)  # (batch, heads, query)
    per_row = torch.where(queries[:, None, :], per_row, 0.0)
    js = per_row.sum(dim=-1) / counts[:, None]
    if base is not None:
        js = js / math.log(base)
    if not torch.isfinite(js).all():
        raise ValueError("attention maps contain NaN, infinite or negative values on real tokens")
    return js


def attention_row_plogp(p, attention_mask) -> torch.Tensor:
    """sum_j p_ij log p_ij over the real keys j of each attention row (minus its entropy); (batch, heads, query) float64.

    One model's part of :func:`attention_js_per_example` (``plogp``); 0 log 0 = 0, padded
    keys left out (they may hold NaN), padded query rows computed like the others.
    """
    p = _as_tensor(p)
    if p.dim() != 4:
        raise ValueError(f"p must be attention maps (batch, heads, query, key); got {tuple(p.shape)}")
    return _row_plogp(p.to(torch.float64, copy=True), _keys_of(p, attention_mask))


def _keys_of(p: torch.Tensor, attention_mask) -> torch.Tensor:
    """The real keys (batch, key) of square attention maps ``p`` (batch, heads, query, key), checked against them."""
    batch, _, n_query, n_key = p.shape
    keys = _as_tensor(attention_mask, device=p.device) != 0
    if n_query != n_key or keys.shape != (batch, n_key):
        raise ValueError(
            f"attention_mask must be (batch, tokens) = ({batch}, {n_key}) for square attention "
            f"maps; got mask {tuple(keys.shape)} and maps {tuple(p.shape)}"
        )
    return keys


def _row_plogp(p: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """sum over real keys of p log p per row, for float64 ``p``, which it overwrites (no temporary of its size)."""
    # masked_fill_, not a product with the mask: padded keys may hold NaN.
    return p.xlogy_(p).masked_fill_(~keys[:, None, None, :], 0.0).sum(dim=-1)


def attention_js(
    p,
    q,
    attention_mask,
    *,
    base: float | None = None,
    query_mask=None,
) -> torch.Tensor:
    """Per-head JS divergence of attention for one layer; shape (heads,), float64.

    The mean over examples of :func:`attention_js_per_example` (same arguments);
    the layer's value in Hao et al. (2020) is the mean of this vector.
    """
    per_example = attention_js_per_example(p, q, attention_mask, base=base, query_mask=query_mask)
    return per_example.mean(dim=0)


def datapoints(hidden: torch.Tensor, attention_mask: torch.Tensor, tokens: str) -> torch.Tensor:
    """(batch, tokens, hidden) -> (datapoints, hidden), padding excluded.

    ``"all"``: every real token; ``"cls"``: each example's first real token (an
    encoder's [CLS]); ``"last"``: its last real token (what a decoder has read the
    whole text at); ``"mean"``: the mean of its real tokens. First and last are
    found from the mask, so they hold under left padding as under right padding.
    """
    if tokens in ("cls", "last"):
        real = attention_mask != 0  # (batch, tokens)
        if tokens == "cls":
            index = real.int().argmax(1)  # argmax returns the first maximum: the first real token
        else:
            index = (real * torch.arange(real.shape[1], device=real.device)).argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]
    if tokens == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1)
    return hidden[attention_mask.bool()]


def nearest_neighbours(x: torch.Tensor, k: int) -> torch.Tensor:
    """(n, k) indices of each row's k most cosine-similar other rows (an example is not its own neighbour)."""
    unit = torch.nn.functional.normalize(x, dim=1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-torch.inf)
    return similarity.topk(k, dim=1).indices


def unbiased_hsic(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """The unbiased HSIC estimator (Song et al. 2012) of two (n, n) kernels; their diagonals are ignored."""
    n = k.shape[0]
    k, l = k.clone().fill_diagonal_(0), l.clone().fill_diagonal_(0)
    return ((k * l.T).sum() + k.sum() * l.sum() / ((n - 1) * (n - 2)) - 2 * (k @ l).sum() / (n - 2)) / (n * (n - 3))
