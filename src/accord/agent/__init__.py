"""The agent: watches a node's desired state, converges, detects drift, reports."""
