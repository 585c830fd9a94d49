"""``Artifact``: a large file fetched by URL and digest.

**stage** downloads it into the content-addressed cache (resumable, verified); **apply** places
it at its path atomically from the cache, with no network needed.
"""

from __future__ import annotations

from typing import ClassVar

from accord.model.specs import ArtifactSpec, Spec
from accord.providers.file import FileLikeProvider, Want


class ArtifactProvider(FileLikeProvider):
    """``Artifact``: stage downloads into the cache (resumable, verified); apply places it."""

    kind: ClassVar[str] = "Artifact"
    spec_model: ClassVar[type[Spec]] = ArtifactSpec

    def want(self, spec: Spec) -> Want:
        assert isinstance(spec, ArtifactSpec)
        return Want(spec.path, spec.sha256, None, None, spec.url, spec.mode, spec.owner, spec.group)
