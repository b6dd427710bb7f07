"""gnnkit.models."""
