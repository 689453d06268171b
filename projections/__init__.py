"""The read side: pure rules (``projections.rules``) and, later, one module per read model."""
