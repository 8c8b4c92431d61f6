"""Query embeddings: the sentence-transformers encoder, its request cache and dataset cache."""
