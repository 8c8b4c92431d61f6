"""bandit-router: pick the LLM for each query with a contextual bandit and learn from feedback."""

__version__ = "0.1.0"
