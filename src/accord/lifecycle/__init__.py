"""Node lifecycles: state machines, transitions and history, webhooks, maintenance windows."""
