"""The routing policy: VW quality model per (query, model), known costs, and exploration."""
