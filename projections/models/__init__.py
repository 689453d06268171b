"""One module per read model: how its events change its rows (``apply``) and how its derived
rows are recomputed before a write (``refresh``)."""
