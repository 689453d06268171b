"""Masa ledger. ``masa.errors`` is the kernel every layer shares; ``masa.app`` is the shell
(CLI, settings, wiring, demo) that nothing else imports."""
