"""Public: what a data-source plugin builds on: resolving paths, reading table files, words and sub-tokens.

(The built-in task generator and the GLUE reader are their plugins' own modules:
``probekit.plugins.source_task.generator`` and ``probekit.plugins.source_glue.reader``.)

Like pytest's ``pytest`` re-exporting ``_pytest``, this module names what plugin authors
may import (docs/plugins.md, "The public surface").
"""
from __future__ import annotations

from probekit.data.files import FILE_SUFFIXES, Columns, read_rows, rows_to_examples
from probekit.data.source import resolve_path
from probekit.data.words import split_words, word_spans, word_tokens

__all__ = ["FILE_SUFFIXES", "Columns", "read_rows", "resolve_path", "rows_to_examples", "split_words", "word_spans",
           "word_tokens"]
