"""gnnkit.train."""
