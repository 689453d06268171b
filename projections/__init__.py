"""The read side: pure rules, one module per read model, and the runner that keeps them."""
