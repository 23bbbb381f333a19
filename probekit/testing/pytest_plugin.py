"""The pytest plugin (entry point ``pytest11``): collects specs with ``[[expect]]``."""
