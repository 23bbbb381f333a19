"""Fine-tuning without training: the learning-rate schedule and where checkpoints are cached."""
from __future__ import annotations

import pytest

from probekit.models.cachedir import cache_root
from probekit.models.finetune import slanted_triangular


def test_slanted_triangular_schedule():
    total, cut_frac, ratio = 100, 0.1, 32
    multipliers = [slanted_triangular(t, total, cut_frac, ratio) for t in range(total)]
    assert multipliers[0] == pytest.approx(1 / ratio)  # starts at lr / ratio
    assert multipliers[10] == pytest.approx(1.0)  # peak at the cut
    assert max(multipliers) == multipliers[10]
    assert all(a < b for a, b in zip(multipliers[:10], multipliers[1:11]))  # linear rise
    assert all(a > b for a, b in zip(multipliers[10:], multipliers[11:]))  # linear decay
    # Howard & Ruder: p = 1 - (t - cut) / (T - cut); lr = (1 + p (ratio - 1)) / ratio
    assert multipliers[55] == pytest.approx((1 + (1 - 45 / 90) * 31) / 32)


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(str(tmp_path / "spec")) == tmp_path / "spec"
    monkeypatch.delenv("PROBEKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "probekit"
