"""probekit's built-in metric plugins, each one module registered through the same
hooks (``probekit_register_metrics``) that a third-party plugin implements."""
