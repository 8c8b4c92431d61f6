"""Plain-Python services between HTTP and the rest, one per domain (docs/architecture.md)."""
