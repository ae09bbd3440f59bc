"""The consortium demo: a local chain, a KGC, five institutions and an aggregator, each its own process."""
