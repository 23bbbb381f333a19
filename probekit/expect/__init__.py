"""Judging expectations against a results table, and showing the verdict."""
