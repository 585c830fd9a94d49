"""The engine: graph, executor, retry, journal, inventory and the converge run."""
