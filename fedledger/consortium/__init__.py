"""From a consortium plan to running parties: the plan, provisioning kits, membership changes, status.

``plan`` reads ``consortium.toml``; ``kits`` lays out what each party receives; ``provision`` makes
every key and kit; ``membership`` re-issues kits when members join or leave; ``status`` and
``metrics`` watch a running federation. Nothing here imports the node or aggregator packages: a kit
describes a party in neutral terms and each role turns it into its own config at start.
"""
