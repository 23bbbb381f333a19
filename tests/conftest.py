"""Shared fixtures: an isolated environment for every test, and tiny offline model folders.

Fixtures only, built on :mod:`probekit.testing.fixtures`; test modules import nothing
from each other or from this file.
"""
from __future__ import annotations

import pytest
import torch

from probekit.testing.fixtures import save_tiny_model


@pytest.fixture(autouse=True, scope="session")
def isolated_session(tmp_path_factory):
    """The same isolation for the session- and module-scoped fixtures, which are set up before any
    function-scoped fixture (an autouse one included) applies."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROBEKIT_CACHE", str(tmp_path_factory.mktemp("session_cache")))
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("PROBEKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
        yield


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Fine-tunes and result caches of a test never touch the user's cache; nothing goes online;
    installed ``probekit`` entry-point plugins cannot change an outcome (the tests of the
    entry-point path unset PROBEKIT_DISABLE_PLUGIN_AUTOLOAD explicitly)."""
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PROBEKIT_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Two different random tiny BERT folders (same vocabulary): 2 layers, hidden size 32, 2 heads."""
    root = tmp_path_factory.mktemp("models")
    return save_tiny_model(root / "tiny_a", seed=0), save_tiny_model(root / "tiny_b", seed=1)


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny
    models run fastest that way (thread start-up costs more than it saves), and the CPUs are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
