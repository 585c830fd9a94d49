"""accord keeps machines in the state their owners declared."""
