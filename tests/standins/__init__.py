"""Stand-ins for outside programs the providers drive (container engines, …)."""
