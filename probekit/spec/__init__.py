"""What a user declares: spec dataclasses, TOML validation, expectation declarations."""
