"""Masa ledger: CLI root, settings and the wiring of adapters."""
