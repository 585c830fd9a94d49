"""The whole exception tree of accord.

::

    AccordError
    ├── InputError                  bad input from a user: exit code 2, HTTP 4xx, nothing changed
    │   ├── ManifestError           a manifest that fails to parse or validate (file, line, field)
    │   ├── GraphError              unknown dependency or a cycle
    │   ├── PathEscapeError         a path outside the configured roots
    │   ├── UnknownKindError        a resource kind no provider serves
    │   ├── PolicyError             the run does not allow what the manifest asks (e.g. Command)
    │   ├── TransitionError         a lifecycle transition the table or a guard refuses
    │   │   └── StaleStateError     the node is no longer in the state the caller expected
    │   └── SignatureError          a manifest envelope refused (accord.signing; has a reason)
    ├── StoreError                  the persistence seam failed
    │   ├── ConflictError           compare-and-set lost: stale revision or key already present
    │   ├── NotFoundError           the key is not there
    │   ├── StoreUnavailableError   backend unreachable (transient)
    │   └── NatsServerError         no usable embedded nats-server (accord.store.nats_server)
    └── ProviderError               a provider phase failed
        ├── TransientError          retry with backoff (optionally after ``retry_after`` seconds)
        └── PermanentError          do not retry; the resource fails

Foreign errors (``sqlite3``, ``httpx``, ``OSError``) are translated where they happen with
``raise … from exc`` so that callers only ever branch on this tree.
"""

from __future__ import annotations


class AccordError(Exception):
    """Base of every error accord raises on purpose."""


class InputError(AccordError):
    """The user's input is wrong. Nothing was changed."""


class ManifestError(InputError):
    """A manifest failed to parse or validate.

    Attributes:
        problems: one line per problem, each naming the file, line, resource id and field.
    """

    def __init__(self, source: str, problems: list[str], *, what: str = "manifest") -> None:
        self.source = source
        self.problems = problems
        count = f"{len(problems)} problem{'s' * (len(problems) != 1)}"
        head = f"{source}: invalid {what} ({count})"
        super().__init__("\n".join([head, *(f"  {p}" for p in problems)]))


class GraphError(InputError):
    """The dependency graph is malformed: an unknown id or a cycle."""


class PathEscapeError(InputError):
    """A path resolves outside every configured root."""


class UnknownKindError(InputError):
    """No provider is registered for a resource kind."""


class PolicyError(InputError):
    """The manifest asks for something this run does not allow."""


class TransitionError(InputError):
    """A lifecycle transition is not allowed: not in the table, or a guard refused it."""


class StaleStateError(TransitionError):
    """The node's state is not the one the caller expected (someone else moved it first)."""


class StoreError(AccordError):
    """The store failed."""


class ConflictError(StoreError):
    """A compare-and-set lost: the key changed since it was read, or already exists."""


class NotFoundError(StoreError):
    """The key does not exist."""


class StoreUnavailableError(StoreError):
    """The backend cannot be reached right now; the operation may be retried."""


class NatsServerError(StoreError):
    """No usable ``nats-server``: the binary is missing or too old, or it would not start."""


class ProviderError(AccordError):
    """A provider phase failed."""


class TransientError(ProviderError):
    """A failure worth retrying (a dropped connection, a busy resource)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ProviderError):
    """A failure that retrying will not fix (a digest mismatch, a permission error)."""
