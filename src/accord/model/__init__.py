"""Pure pydantic types: manifests, specs, plans and status. No I/O happens here."""

from accord.model import loading, manifest, plan, specs, status

__all__ = ["loading", "manifest", "plan", "specs", "status"]
