"""Pure pydantic types: manifests, specs, plans and status. No I/O happens here."""
