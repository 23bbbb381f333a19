"""Shared fixtures: an isolated cache and tiny offline model folders."""
from __future__ import annotations

import pytest
from helpers import save_tiny_bert


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Fine-tunes and result caches of a test never touch the user's cache."""
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Two different random tiny BERT folders (same vocabulary)."""
    root = tmp_path_factory.mktemp("models")
    return save_tiny_bert(root / "tiny_a", 0), save_tiny_bert(root / "tiny_b", 1)
