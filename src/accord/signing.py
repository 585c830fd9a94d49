"""Signed manifests: the control plane signs what it publishes; agents verify against pinned keys.

Envelope
    What the control plane writes to ``fleet.desired.<node>`` (JSON)::

        {"node": "edge-1",
         "sequence": 42,
         "signed_at": "2025-03-30T01:00:00.000000Z",
         "manifest": "{\\"api_version\\":\\"accord/v1\\",\\"metadata\\":{...},...}",
         "signatures": [{"key_id": "3f9a0c1d2e4b5a67", "algorithm": "ed25519",
                         "signature": "<base64 of 64 bytes>"}]}

    ``manifest`` is the manifest's canonical JSON as *text*: the agent verifies the exact bytes
    that were signed and only then parses them, so neither side has to re-create the other's
    bytes. ``key_id`` is a hint that picks the pinned key to try; it is never trusted by itself.

Canonicalisation
    ``canonical_bytes(m)`` is
    ``json.dumps(m.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"),
    ensure_ascii=False, allow_nan=False).encode("utf-8")``: keys sorted, no whitespace, non-ASCII
    as UTF-8, defaults written out (the signature covers the values the control plane meant, not
    the agent's defaults). The same manifest from YAML, from JSON or from dicts in any key order
    gives the same bytes.

What is signed
    Every envelope field but the signatures, in one unambiguous message::

        b"accord-signed-manifest/v2\\n" + node + b"\\n" + sequence + b"\\n" + signed_at
            + b"\\n" + manifest

    ``node`` matches ``NODE_ID`` (no newline), ``sequence`` is the publish sequence in decimal
    ASCII (no sign, no leading zeros), ``signed_at`` is the instant in UTC rendered as
    ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (the same instant in any offset gives the same text), and
    ``manifest`` is the UTF-8 of the envelope's manifest text. Signing the node means a manifest
    addressed to node A cannot be replayed to node B; signing the sequence means an envelope
    cannot be moved forward in a node's history.

    Version 1 (``accord-signed-manifest/v1``: the same message without the sequence) is not
    accepted: there was no installed base of v1 agents or envelopes, so v2 does not carry a
    compatibility path. An envelope without ``sequence`` is refused as ``malformed`` with a
    message saying it is a v1 envelope; a v1 signature over v2 fields cannot verify (the tag
    differs), and a v1 agent refuses a v2 envelope as ``malformed`` (an unknown field).

Trust
    An agent pins one or more public keys (a :class:`TrustStore`). An envelope is authentic if
    ANY of its signatures made by a pinned key verifies; signatures by other keys or other
    algorithms are ignored. Rotation: the control plane signs with the old and the new key; agents
    trust both during the rollover, then drop the old one, after which a manifest signed only by
    the old key is refused (``unknown_key``).

Replay
    Every envelope carries a per-node publish *sequence*, and sequences only move forward. The
    control plane hands out a new sequence for every new manifest text it publishes to a node
    (:mod:`accord.server.publish`), higher than every sequence that node was ever sent, including
    before a withdrawal; re-signing the same text (a key rotation) keeps its sequence. The caller
    passes what it accepted last (:class:`Accepted`: sequence, generation, and the digest of the
    signed manifest bytes). A lower sequence is ``replayed``; the same sequence with different
    bytes is ``replayed`` too (a sequence names one manifest text for good); the same sequence
    with the same bytes is accepted again (re-delivery, or a re-signing with a new key during
    rotation). A higher sequence is accepted whatever its manifest's name and generation.

    Why a sequence and not the manifest's generation: generations count per manifest *name*,
    while replay is about what one *node* was told. A node reassigned from ``big`` (generation
    7) to ``small`` (generation 2) must accept ``small``, yet must still refuse ``big``
    generation 7 if an attacker re-plays that old, validly signed envelope; only an order over
    everything the node was sent tells the two apart. The generation stays in the manifest (and
    in :class:`Accepted`) for status reporting: it says which content is in force, the
    sequence says which publish delivered it.

    Replay protection is only as durable as the ``last`` the caller keeps: an agent that lost
    it (a wiped state directory, or a saved envelope that no longer verifies because its only
    signing key was unpinned) accepts any authentic envelope addressed to it, once.

Checks run in this order, and the first failure is the :class:`SignatureError` ``reason``:
``malformed`` (not an envelope: :func:`load_envelope`) → ``unsigned`` → ``unknown_key`` →
``bad_signature`` → ``wrong_node`` → the manifest itself (``malformed`` if the signed text is not
JSON; :class:`accord.errors.ManifestError` if it is not a valid manifest for the agent's kinds,
e.g. a kind outside its allow-list) → ``replayed``. Authenticity comes first: nothing about an
envelope is interpreted before a pinned key vouches for it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from accord import errors
from accord.model import loading
from accord.model.manifest import Manifest
from accord.model.specs import Spec
from accord.model.status import Condition, ConditionStatus

ED25519 = "ed25519"
NODE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$"  # the node ids of accord.lifecycle.nodes
CONDITION_TYPE = "ManifestVerified"
DOMAIN = b"accord-signed-manifest/v2"
MAX_SEQUENCE = 2**53 - 1  # I-JSON (RFC 7493): exact in every JSON parser, JavaScript's too
PRIVATE_MODE, PUBLIC_MODE = 0o600, 0o644


class Reason(enum.StrEnum):
    """Why a signed manifest was refused."""

    UNSIGNED = "unsigned"  # no signature at all
    UNKNOWN_KEY = "unknown_key"  # no signature by a pinned key
    BAD_SIGNATURE = "bad_signature"  # a pinned key's signature does not verify: tampered
    WRONG_NODE = "wrong_node"  # authentic, but addressed to another node
    REPLAYED = "replayed"  # an older publish sequence, or an accepted sequence with other content
    MALFORMED = "malformed"  # not a signed manifest envelope


CONDITION_REASON = {
    Reason.UNSIGNED: "Unsigned",
    Reason.UNKNOWN_KEY: "UnknownKey",
    Reason.BAD_SIGNATURE: "BadSignature",
    Reason.WRONG_NODE: "WrongNode",
    Reason.REPLAYED: "Replayed",
    Reason.MALFORMED: "Malformed",
}


class SignatureError(errors.InputError):
    """A signed manifest was refused; ``reason`` says why (a :class:`Reason`)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"manifest refused ({reason.value}): {detail}")


# --- the envelope ---------------------------------------------------------------------------


class Signature(BaseModel):
    """One signature over an envelope's signed message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(min_length=1, max_length=64)
    algorithm: str = ED25519  # others are ignored by this version, not refused
    signature: str = Field(description="base64 of the raw signature")


class SignedManifest(BaseModel):
    """A manifest addressed to one node, with the signatures that vouch for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str = Field(pattern=NODE_ID, max_length=200)
    sequence: int = Field(
        ge=1, le=MAX_SEQUENCE, description="the node's publish sequence (see Replay)"
    )
    signed_at: AwareDatetime
    manifest: str = Field(description="the manifest's canonical JSON text (see canonical_bytes)")
    signatures: tuple[Signature, ...] = ()

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the signed manifest bytes: what replay protection compares."""
        return "sha256:" + hashlib.sha256(self.manifest.encode("utf-8")).hexdigest()


class Accepted(BaseModel):
    """The last manifest an agent accepted, as replay protection needs it. Persist it.

    ``sequence`` and ``digest`` decide replays; ``generation`` is the manifest's, for status.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sequence: int = Field(ge=1)
    generation: int = Field(ge=0)
    digest: str


@dataclass(frozen=True, slots=True)
class Verified:
    """An envelope that passed every check."""

    manifest: Manifest
    accepted: Accepted  # pass it as ``last`` to the next ``verify``
    key_ids: tuple[str, ...]  # the pinned keys whose signatures verified


def canonical_bytes(manifest: Manifest) -> bytes:
    """The bytes that get signed for ``manifest`` (see the module docstring)."""
    document = manifest.model_dump(mode="json", by_alias=True)
    text = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def signed_message(node: str, sequence: int, signed_at: datetime, manifest: bytes) -> bytes:
    """The exact message a signature covers (the fields in the order they are signed)."""
    instant = signed_at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    return b"\n".join(
        (DOMAIN, node.encode("utf-8"), str(sequence).encode(), f"{instant}Z".encode(), manifest)
    )


def load_envelope(data: str | bytes) -> SignedManifest:
    """Parse an envelope from its JSON.

    Raises:
        SignatureError: ``malformed``, naming what is wrong.
    """
    try:
        return SignedManifest.model_validate_json(data)
    except ValidationError as exc:
        if any(e["loc"] == ("sequence",) and e["type"] == "missing" for e in exc.errors()):
            raise SignatureError(
                Reason.MALFORMED,
                "a v1 envelope (no publish sequence): this agent accepts "
                f"{DOMAIN.decode()} only; publish again from an upgraded control plane",
            ) from None
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'envelope'}: {e['msg']}"
            for e in exc.errors()[:3]
        )
        raise SignatureError(Reason.MALFORMED, f"not a signed manifest: {problems}") from None


# --- keys -----------------------------------------------------------------------------------


class VerifyKey:
    """An ed25519 public key, as an agent pins it."""

    __slots__ = ("_key", "key_id", "raw")

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        self.raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        # A short fingerprint: the first 16 hex digits of the sha256 of the raw public key.
        self.key_id = hashlib.sha256(self.raw).hexdigest()[:16]

    @classmethod
    def from_bytes(cls, raw: bytes) -> VerifyKey:
        """A key from its raw 32 bytes."""
        if len(raw) != 32:
            raise errors.InputError(f"an ed25519 public key is 32 bytes, not {len(raw)}")
        try:
            return cls(Ed25519PublicKey.from_public_bytes(raw))
        except ValueError as exc:
            raise errors.InputError(f"not an ed25519 public key: {exc}") from None

    @classmethod
    def load(cls, path: Path) -> VerifyKey:
        """Read a public key: PEM (``BEGIN PUBLIC KEY``) or one line of base64 (32 bytes)."""
        key = load_key(path)
        if isinstance(key, SigningKey):
            raise errors.InputError(f"{path}: a private key; pin the public key (.pub) instead")
        return key

    def verifies(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``message``."""
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def text(self) -> str:
        """The raw public key as base64, for pinning by copy and paste."""
        return base64.b64encode(self.raw).decode("ascii")

    def pem(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def save(self, path: Path, *, encoding: Literal["pem", "base64"] = "pem",
             overwrite: bool = False) -> None:  # fmt: skip
        """Write the key (mode 0644), atomically; refuse to replace a file unless ``overwrite``."""
        data = self.pem() if encoding == "pem" else (self.text() + "\n").encode("ascii")
        _write(path, data, mode=PUBLIC_MODE, overwrite=overwrite)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"VerifyKey(key_id={self.key_id!r})"


class SigningKey:
    """An ed25519 private key: the control plane's. Its repr never shows the key."""

    __slots__ = ("_key", "verify_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.verify_key = VerifyKey(key.public_key())

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Read a private key: PEM (PKCS#8, unencrypted) or base64 of seed + public key (64 B)."""
        key = load_key(path)
        if isinstance(key, VerifyKey):
            raise errors.InputError(f"{path}: a public key; signing needs the private key")
        return key

    @property
    def key_id(self) -> str:
        return self.verify_key.key_id

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def save(self, path: Path, *, encoding: Literal["pem", "base64"] = "pem",
             overwrite: bool = False) -> None:  # fmt: skip
        """Write the key (mode 0600), atomically; refuse to replace a file unless ``overwrite``."""
        if encoding == "pem":
            data = self._key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        else:
            seed = self._key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
            data = base64.b64encode(seed + self.verify_key.raw) + b"\n"
        _write(path, data, mode=PRIVATE_MODE, overwrite=overwrite)

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"


def load_key(path: Path) -> SigningKey | VerifyKey:
    """Read a key file of either kind (PEM, or base64: 32 bytes public, 64 bytes private).

    Raises:
        InputError: the file cannot be read or holds no ed25519 key.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise errors.InputError(f"{path}: {exc.strerror or exc}") from None
    not_a_key = errors.InputError(f"{path}: not an ed25519 key (PEM, or base64 of the raw key)")
    if data.lstrip().startswith(b"-----BEGIN"):
        return _load_pem(path, data, not_a_key)
    try:
        raw = base64.b64decode(b"".join(data.split()), validate=True)
    except binascii.Error:
        raise not_a_key from None
    if len(raw) == 32:
        return VerifyKey.from_bytes(raw)
    if len(raw) == 64:
        key = SigningKey(Ed25519PrivateKey.from_private_bytes(raw[:32]))
        if key.verify_key.raw != raw[32:]:
            raise errors.InputError(f"{path}: the public half does not match the private key")
        return key
    raise not_a_key


def _load_pem(path: Path, data: bytes, not_a_key: errors.InputError) -> SigningKey | VerifyKey:
    try:
        if b"PRIVATE KEY" in data:
            private = serialization.load_pem_private_key(data, password=None)
            if isinstance(private, Ed25519PrivateKey):
                return SigningKey(private)
        else:
            public = serialization.load_pem_public_key(data)
            if isinstance(public, Ed25519PublicKey):
                return VerifyKey(public)
    except TypeError:  # cryptography's way of saying "encrypted, and no password given"
        raise errors.InputError(f"{path}: encrypted private keys are not supported") from None
    except (ValueError, UnsupportedAlgorithm):
        raise not_a_key from None
    raise errors.InputError(f"{path}: not an ed25519 key (another algorithm)")


def _write(path: Path, data: bytes, *, mode: int, overwrite: bool) -> None:
    """Write to a temp file with ``mode`` from the start, fsync, then link or rename in place."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)  # whatever the umask says
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if overwrite:
            os.replace(temp, path)
        else:
            os.link(temp, path)  # atomic, and fails if the path exists: never clobbers a key
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except FileExistsError:
        raise errors.InputError(f"{path}: already exists; not replacing a key") from None
    except OSError as exc:
        raise errors.InputError(f"{path}: {exc.strerror or exc}") from None
    finally:
        temp.unlink(missing_ok=True)


# --- signing and verifying ------------------------------------------------------------------


def sign(
    manifest: Manifest,
    node: str,
    keys: Sequence[SigningKey],
    *,
    sequence: int,
    signed_at: datetime | None = None,
) -> SignedManifest:
    """Address ``manifest`` to ``node`` as publish ``sequence`` and sign it with every key (old
    and new in a rotation). The caller owns the sequence (see Replay in the module docstring).

    Raises:
        InputError: no keys, the same key twice, a node id that is not one, or a sequence
            outside 1 .. ``MAX_SEQUENCE``.
    """
    if not keys:
        raise errors.InputError("signing needs at least one key")
    ids = [key.key_id for key in keys]
    if len(set(ids)) != len(ids):
        raise errors.InputError(f"the same key is given twice: {', '.join(ids)}")
    when = signed_at or datetime.now(UTC)
    if when.tzinfo is None:
        raise errors.InputError("signed_at needs a timezone")
    if not 1 <= sequence <= MAX_SEQUENCE:
        raise errors.InputError(f"a publish sequence is 1 .. {MAX_SEQUENCE}, not {sequence}")
    payload = canonical_bytes(manifest)
    try:
        envelope = SignedManifest(
            node=node, sequence=sequence, signed_at=when, manifest=payload.decode("utf-8")
        )
    except ValidationError:
        raise errors.InputError(f"not a node id: {node!r}") from None
    message = signed_message(envelope.node, envelope.sequence, envelope.signed_at, payload)
    signatures = tuple(
        Signature(key_id=key.key_id, signature=base64.b64encode(key.sign(message)).decode())
        for key in keys
    )
    return envelope.model_copy(update={"signatures": signatures})


class TrustStore:
    """The public keys an agent pins (at least one). Verifies envelopes; holds no other state."""

    def __init__(self, keys: Iterable[VerifyKey]) -> None:
        self._keys = {key.key_id: key for key in keys}
        if not self._keys:
            raise errors.InputError("a trust store needs at least one public key")

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> TrustStore:
        """Pin the public key in each file."""
        return cls(VerifyKey.load(path) for path in paths)

    @classmethod
    def from_dir(cls, directory: Path) -> TrustStore:
        """Pin every ``*.pub`` file in ``directory`` (other files are not keys to trust)."""
        try:
            paths = sorted(p for p in directory.iterdir() if p.suffix == ".pub" and p.is_file())
        except OSError as exc:
            raise errors.InputError(f"{directory}: {exc.strerror or exc}") from None
        if not paths:
            raise errors.InputError(f"{directory}: no *.pub keys to trust")
        return cls.from_files(paths)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __repr__(self) -> str:
        return f"TrustStore(key_ids={list(self.key_ids)!r})"

    def verify(
        self,
        envelope: SignedManifest,
        *,
        node: str,
        kinds: Mapping[str, type[Spec]],
        last: Accepted | None = None,
    ) -> Verified:
        """Check an envelope for ``node`` and return its manifest.

        Args:
            envelope: as read from the store (see :func:`load_envelope`).
            node: the verifying agent's own node id.
            kinds: the kinds this agent allows; the manifest is parsed against them.
            last: what this agent accepted before (``Verified.accepted``), or None at first.

        Raises:
            SignatureError: with its ``reason``, in the order of the module docstring.
            ManifestError: the manifest is authentic but not valid here (e.g. an unknown kind).
        """
        if not envelope.signatures:
            raise SignatureError(Reason.UNSIGNED, f"the manifest for {envelope.node!r} is unsigned")
        pinned = [
            (sig, self._keys[sig.key_id])
            for sig in envelope.signatures
            if sig.algorithm == ED25519 and sig.key_id in self._keys
        ]
        if not pinned:
            found = ", ".join(f"{s.key_id} ({s.algorithm})" for s in envelope.signatures)
            raise SignatureError(
                Reason.UNKNOWN_KEY,
                f"signed by {found}; trusted: {', '.join(self.key_ids)}",
            )
        try:
            payload = envelope.manifest.encode("utf-8")
        except UnicodeEncodeError:
            raise SignatureError(Reason.MALFORMED, "the manifest text is not valid UTF-8") from None
        message = signed_message(envelope.node, envelope.sequence, envelope.signed_at, payload)
        good = tuple(key.key_id for sig, key in pinned if key.verifies(_decode(sig), message))
        if not good:
            tried = ", ".join(key.key_id for _, key in pinned)
            raise SignatureError(
                Reason.BAD_SIGNATURE,
                f"the signature by {tried} does not match: changed after signing, or corrupt",
            )
        if envelope.node != node:
            raise SignatureError(
                Reason.WRONG_NODE, f"signed for node {envelope.node!r}, not for {node!r}"
            )
        if not envelope.manifest.startswith("{"):
            raise SignatureError(Reason.MALFORMED, "the signed manifest is not JSON")
        manifest = loading.parse_manifest(
            envelope.manifest, source=f"signed manifest for {node}", kinds=kinds
        )
        accepted = Accepted(
            sequence=envelope.sequence,
            generation=manifest.metadata.generation,
            digest=envelope.digest,
        )
        _check_replay(manifest.metadata.name, accepted, last)
        return Verified(manifest=manifest, accepted=accepted, key_ids=good)


def _decode(signature: Signature) -> bytes:
    """The raw signature; undecodable base64 becomes bytes that can never verify."""
    try:
        return base64.b64decode(signature.signature, validate=True)
    except binascii.Error:
        return b""


def _check_replay(name: str, accepted: Accepted, last: Accepted | None) -> None:
    """Order by publish sequence only (see Replay): names and generations do not decide."""
    if last is None:
        return
    if accepted.sequence < last.sequence:
        raise SignatureError(
            Reason.REPLAYED,
            f"publish sequence {accepted.sequence} ({name} generation {accepted.generation}) "
            f"is older than the accepted sequence {last.sequence} "
            f"(generation {last.generation})",
        )
    if accepted.sequence == last.sequence and accepted.digest != last.digest:
        raise SignatureError(
            Reason.REPLAYED,
            f"publish sequence {accepted.sequence} ({name} generation {accepted.generation}) "
            f"was accepted with other content ({last.digest}); a sequence cannot change",
        )


# --- conditions -----------------------------------------------------------------------------


def condition_for(error: errors.AccordError, *, observed_generation: int = 0) -> Condition:
    """The ``ManifestVerified=False`` condition an agent reports for a refused manifest.

    ``observed_generation`` is the generation the agent still enforces (its last accepted).
    """
    if isinstance(error, SignatureError):
        reason = CONDITION_REASON[error.reason]
    elif isinstance(error, errors.ManifestError):
        reason = "InvalidManifest"
    else:
        reason = "VerificationFailed"
    return Condition(
        type=CONDITION_TYPE,
        status=ConditionStatus.FALSE,
        reason=reason,
        message=str(error),
        observed_generation=observed_generation,
    )


def verified_condition(verified: Verified) -> Condition:
    """The ``ManifestVerified=True`` condition for an accepted manifest."""
    return Condition(
        type=CONDITION_TYPE,
        status=ConditionStatus.TRUE,
        reason="Verified",
        message=f"signed by {', '.join(verified.key_ids)}",
        observed_generation=verified.accepted.generation,
    )
