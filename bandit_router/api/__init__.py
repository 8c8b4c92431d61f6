"""HTTP API (FastAPI): routing, feedback, decisions, admin, health."""
