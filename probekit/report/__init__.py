"""The terminal report and the figures, drawn from a results table alone."""
