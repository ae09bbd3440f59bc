"""Differential privacy for federated rounds: clipping, noise (distributed in the ring, or central)
and an RDP accountant that recomputes (epsilon, delta) from the recorded round parameters alone.

Modules: :mod:`clipping` (per-member L2 clipping), :mod:`distributed` (Skellam noise shares added
inside secure aggregation), :mod:`central` (Gaussian noise at the aggregator, for consortia
without secure aggregation), :mod:`accountant` (RDP accounting, per round and cumulative, and
the budget check). See docs/secagg.md.
"""
