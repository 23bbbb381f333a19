"""Public: where each supported transformer family keeps its parts, for plugins that run their own forwards.

Like pytest's ``pytest`` re-exporting ``_pytest``, this module names what plugin authors
may import (docs/plugins.md, "The public surface").
"""
from __future__ import annotations

from probekit.models.families import (
    base_model,
    embedding_modules,
    family_of,
    model_inputs,
    transformer_layers,
)

__all__ = ["base_model", "embedding_modules", "family_of", "model_inputs", "transformer_layers"]
