"""gnnkit.data."""
