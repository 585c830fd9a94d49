"""Debian version ordering (``[epoch:]upstream[-revision]``), as ``dpkg --compare-versions``.

``diff`` must be pure, so it cannot ask dpkg; this is dpkg's algorithm (``verrevcmp`` in
``lib/dpkg/version.c``), checked against ``dpkg --compare-versions`` in the tests. It makes
``1.0`` equal ``0:1.0`` and ``1.0-0``, as dpkg does, and lets a plan say "upgrade" or "downgrade".
"""

from __future__ import annotations

from accord import errors

DIGITS = frozenset("0123456789")
LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def compare(a: str, b: str) -> int:
    """Negative, zero or positive as ``a`` is older than, equal to or newer than ``b``."""
    (epoch_a, upstream_a, revision_a), (epoch_b, upstream_b, revision_b) = _split(a), _split(b)
    if epoch_a != epoch_b:
        return -1 if epoch_a < epoch_b else 1
    return _verrevcmp(upstream_a, upstream_b) or _verrevcmp(revision_a, revision_b)


def equal(a: str, b: str) -> bool:
    return compare(a, b) == 0


def _split(version: str) -> tuple[int, str, str]:
    """(epoch, upstream, revision); a :class:`~accord.errors.PermanentError` for what dpkg
    calls bad syntax (an error, not a warning). The spec refuses those already; a version that
    comes from elsewhere (dpkg's database, apt's lists) and slips through fails typed."""
    epoch, colon, rest = version.partition(":")
    if not colon:
        epoch, rest = "0", version
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    problem = (
        "it has blanks" if any(c.isspace() for c in version)
        else "the epoch is not a number" if not epoch or not set(epoch) <= DIGITS
        else "the upstream version is empty" if not upstream
        else "the revision is empty" if dash and not revision
        else None
    )  # fmt: skip
    if problem is not None:
        raise errors.PermanentError(f"{version!r} is not a Debian version: {problem}")
    return int(epoch), upstream, revision


def _order(char: str) -> int:
    """dpkg's weight of a non-digit: ``~`` sorts before the end, letters before other marks."""
    if char == "~":
        return -1
    if char in LETTERS:
        return ord(char)
    return ord(char) + 256


def _verrevcmp(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        # The non-digit prefixes, character by character (the end weighs 0, as a digit does).
        while (i < len(a) and a[i] not in DIGITS) or (j < len(b) and b[j] not in DIGITS):
            left = _order(a[i]) if i < len(a) and a[i] not in DIGITS else 0
            right = _order(b[j]) if j < len(b) and b[j] not in DIGITS else 0
            if left != right:
                return left - right
            i, j = i + 1, j + 1
        # Then the numbers, by value: skip leading zeros, the longer is larger, else the first
        # digit that differs decides.
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        first_diff = 0
        while i < len(a) and a[i] in DIGITS and j < len(b) and b[j] in DIGITS:
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i, j = i + 1, j + 1
        if i < len(a) and a[i] in DIGITS:
            return 1
        if j < len(b) and b[j] in DIGITS:
            return -1
        if first_diff:
            return first_diff
    return 0
