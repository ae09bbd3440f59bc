"""Helpers the tests import as ``tests.support.<module>``: pytest runs with ``--import-mode=importlib``
and the repository root on its ``pythonpath``, so no test edits ``sys.path``."""
