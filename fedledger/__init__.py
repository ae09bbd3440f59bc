"""fedledger: heterogeneous federated learning for hospital consortia on an auditable ledger.

Sub-packages, one responsibility each: ``sm9`` (signatures and threshold signing), ``store``
(content-addressed model files), ``chain`` (the ledger contract client), ``fl`` (models,
training, alignment aggregation), ``audit`` (read-only REST API), ``cli`` (the command line).
"""

__version__ = "0.1.0"
