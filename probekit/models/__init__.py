"""Models: loading (the embedded default, hub ids, folders) and fine-tuning with a checkpoint cache."""
