"""Optional integrations with engines users already run: Ray Data (``[ray]`` extra)."""
