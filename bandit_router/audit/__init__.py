"""Gold-audit statistics: bias correction of preference feedback, PPI++ intervals and OPE."""
