"""Where probekit's cache lives (fine-tunes, results, locks): one rule, read by every command without torch."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root(setting: str | None = None) -> Path:
    """``[run] cache_dir``, else $PROBEKIT_CACHE, else the user cache dir."""
    if setting:
        return Path(setting).expanduser()
    if os.environ.get("PROBEKIT_CACHE"):
        return Path(os.environ["PROBEKIT_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "probekit"
