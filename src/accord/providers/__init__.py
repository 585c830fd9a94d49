"""Providers: one module per resource kind, the contract in ``base``, discovery in ``registry``."""
