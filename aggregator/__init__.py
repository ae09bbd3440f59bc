"""The aggregator's role: drives rounds, aligns sub-models, and coordinates threshold signing."""
