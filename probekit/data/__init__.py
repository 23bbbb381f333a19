"""Examples and where they come from: the data-source contract, batching, files, built-in tasks, GLUE."""
