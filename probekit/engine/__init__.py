"""Running specs: the Session, the probe plan and probing, captures, progress, the results cache."""
