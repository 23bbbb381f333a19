"""Testing probekit specs and plugins: assertion helpers, fixtures and the pytest plugin."""
