"""The metric layer: the contract plugins implement and the math they use."""
