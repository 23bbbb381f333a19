"""The results table: its schema, Parquet I/O, layer selections and the run history."""
