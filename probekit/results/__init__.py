"""The results table: its schema, Parquet I/O, layer selections and the run history.

``probekit.results.metadata(table)`` and ``probekit.results.read_table(path)`` are the public readers
(docs/results.md); the rest is probekit's own.
"""
from probekit.results.io import metadata, read_table

__all__ = ["metadata", "read_table"]
