"""The plugin system: the hook specifications and the plugin manager."""
