"""The shell: the ``masa`` CLI, the one settings object, the wiring of adapters, keys and the
demo. Nothing outside ``masa.app`` imports it (an import contract in the test suite)."""
