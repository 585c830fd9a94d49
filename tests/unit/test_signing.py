"""Signed manifests: canonical bytes, keys on disk, and every way an agent refuses an envelope."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord import errors, signing
from accord.model.loading import parse_manifest
from accord.model.manifest import Manifest
from accord.model.specs import Spec
from accord.model.status import ConditionStatus
from accord.providers import registry

KINDS: dict[str, type[Spec]] = registry.default().kinds()
AT = datetime(2025, 3, 30, 1, 0, 0, 123456, tzinfo=UTC)

YAML = """\
api_version: accord/v1
metadata:
  name: site
  generation: 3
  labels: {site: plant-a, tier: edge}
resources:
  - id: dir
    kind: Directory
    spec: {path: etc/app, mode: 0750}
  - id: conf
    kind: File
    depends_on: [dir]
    spec:
      path: etc/app/app.conf
      content: "größe = 1\\n"
      mode: 0644
  - id: link
    kind: Symlink
    spec: {target: etc/app/app.conf, path: etc/app.conf}
"""

# The same manifest in JSON, with keys in another order and modes written as strings.
JSON = json.dumps(
    {
        "resources": [
            {"spec": {"mode": "0750", "path": "etc/app"}, "kind": "Directory", "id": "dir"},
            {
                "depends_on": ["dir"],
                "spec": {"mode": "0644", "content": "größe = 1\n", "path": "etc/app/app.conf"},
                "kind": "File",
                "id": "conf",
            },
            {"kind": "Symlink", "id": "link",
             "spec": {"path": "etc/app.conf", "target": "etc/app/app.conf"}},
        ],
        "metadata": {"labels": {"tier": "edge", "site": "plant-a"}, "generation": 3,
                     "name": "site"},
    },
    ensure_ascii=True,
)  # fmt: skip


def manifest(generation: int = 3, content: str = "größe = 1\n") -> Manifest:
    text = YAML.replace("generation: 3", f"generation: {generation}")
    return parse_manifest(
        text.replace("größe = 1\\n", content.replace("\n", "\\n")), source="site.yaml", kinds=KINDS
    )


@pytest.fixture(scope="module")
def old() -> signing.SigningKey:
    return signing.SigningKey.generate()


@pytest.fixture(scope="module")
def new() -> signing.SigningKey:
    return signing.SigningKey.generate()


def sign(
    manifest: Manifest,
    node: str,
    keys: list[signing.SigningKey],
    *,
    sequence: int = 1,
    signed_at: datetime | None = None,
) -> signing.SignedManifest:
    return signing.sign(manifest, node, keys, sequence=sequence, signed_at=signed_at)


def trust(*keys: signing.SigningKey) -> signing.TrustStore:
    return signing.TrustStore(key.verify_key for key in keys)


def verify(
    store: signing.TrustStore,
    envelope: signing.SignedManifest,
    *,
    node: str = "edge-1",
    last: signing.Accepted | None = None,
) -> signing.Verified:
    return store.verify(envelope, node=node, kinds=KINDS, last=last)


def refused(
    store: signing.TrustStore, envelope: signing.SignedManifest, **kwargs: Any
) -> signing.SignatureError:
    with pytest.raises(signing.SignatureError) as info:
        verify(store, envelope, **kwargs)
    assert info.value.reason.value in str(info.value)  # the message names the reason
    return info.value


# --- canonical bytes ------------------------------------------------------------------------


def test_canonical_bytes_are_the_same_from_yaml_and_json_in_any_key_order() -> None:
    from_yaml = parse_manifest(YAML, source="site.yaml", kinds=KINDS)
    from_json = parse_manifest(JSON, source="site.json", kinds=KINDS)
    canonical = signing.canonical_bytes(from_yaml)
    assert canonical == signing.canonical_bytes(from_json)
    # Sorted keys, no whitespace, UTF-8 (not \\u escapes), defaults written out, octal modes.
    text = canonical.decode("utf-8")
    assert text.startswith('{"api_version":"accord/v1","metadata":{"generation":3,')
    assert " " not in text.replace("größe = 1", "")
    assert "größe" in text and '"mode":"0644"' in text and '"owner":null' in text
    assert json.loads(text) == json.loads(signing.canonical_bytes(from_json))


def test_canonical_bytes_do_not_depend_on_dict_key_order() -> None:
    document: dict[str, Any] = json.loads(JSON)
    reordered = {
        "metadata": dict(reversed(list(document["metadata"].items()))),
        "resources": [dict(reversed(list(r.items()))) for r in document["resources"]],
    }
    again = parse_manifest(json.dumps(reordered), source="again.json", kinds=KINDS)
    assert signing.canonical_bytes(again) == signing.canonical_bytes(manifest())


def test_the_envelope_round_trips_through_json(old: signing.SigningKey) -> None:
    envelope = sign(manifest(), "edge-1", [old], signed_at=AT)
    wire = envelope.model_dump_json()
    again = signing.load_envelope(wire.encode())
    assert again == envelope
    assert again.manifest == signing.canonical_bytes(manifest()).decode()
    assert json.loads(wire)["signatures"][0] == {
        "key_id": old.key_id,
        "algorithm": "ed25519",
        "signature": envelope.signatures[0].signature,
    }
    verified = verify(trust(old), again)
    assert verified.manifest == manifest()
    assert verified.key_ids == (old.key_id,)
    assert verified.accepted == signing.Accepted(sequence=1, generation=3, digest=envelope.digest)


def test_signed_at_is_covered_as_an_instant_in_any_offset(old: signing.SigningKey) -> None:
    envelope = sign(manifest(), "edge-1", [old], signed_at=AT)
    berlin = AT.astimezone(timezone(timedelta(hours=2)))
    verify(trust(old), envelope.model_copy(update={"signed_at": berlin}))
    later = envelope.model_copy(update={"signed_at": AT + timedelta(microseconds=1)})
    assert refused(trust(old), later).reason == signing.Reason.BAD_SIGNATURE


# --- refusals -------------------------------------------------------------------------------


def test_a_changed_resource_field_is_a_bad_signature(old: signing.SigningKey) -> None:
    envelope = sign(manifest(), "edge-1", [old])
    tampered = envelope.manifest.replace("größe = 1", "größe = 2")
    assert tampered != envelope.manifest
    error = refused(trust(old), envelope.model_copy(update={"manifest": tampered}))
    assert error.reason == signing.Reason.BAD_SIGNATURE


def test_a_manifest_re_signed_with_the_wrong_node_field_is_a_bad_signature(
    old: signing.SigningKey,
) -> None:
    envelope = sign(manifest(), "edge-1", [old])
    moved = envelope.model_copy(update={"node": "edge-2"})
    assert refused(trust(old), moved, node="edge-2").reason == signing.Reason.BAD_SIGNATURE


def test_unsigned_is_refused(old: signing.SigningKey) -> None:
    envelope = sign(manifest(), "edge-1", [old]).model_copy(update={"signatures": ()})
    assert refused(trust(old), envelope).reason == signing.Reason.UNSIGNED


def test_a_key_that_is_not_pinned_is_unknown(
    old: signing.SigningKey, new: signing.SigningKey
) -> None:
    stranger = signing.SigningKey.generate()
    envelope = sign(manifest(), "edge-1", [stranger])
    error = refused(trust(old, new), envelope)
    assert error.reason == signing.Reason.UNKNOWN_KEY
    assert stranger.key_id in str(error) and old.key_id in str(error)


def test_a_forged_key_id_does_not_help(old: signing.SigningKey) -> None:
    # The key id is only a hint: a stranger's signature labelled with a pinned id fails.
    stranger = signing.SigningKey.generate()
    envelope = sign(manifest(), "edge-1", [stranger])
    forged = signing.Signature(key_id=old.key_id, signature=envelope.signatures[0].signature)
    error = refused(trust(old), envelope.model_copy(update={"signatures": (forged,)}))
    assert error.reason == signing.Reason.BAD_SIGNATURE


def test_other_algorithms_are_ignored_not_trusted(old: signing.SigningKey) -> None:
    envelope = sign(manifest(), "edge-1", [old])
    other = envelope.signatures[0].model_copy(update={"algorithm": "ml-dsa-65"})
    refused_alone = envelope.model_copy(update={"signatures": (other,)})
    assert refused(trust(old), refused_alone).reason == signing.Reason.UNKNOWN_KEY
    beside = envelope.model_copy(update={"signatures": (other, envelope.signatures[0])})
    verify(trust(old), beside)


def test_a_manifest_for_node_a_is_refused_by_node_b(old: signing.SigningKey) -> None:
    envelope = sign(manifest(), "edge-a", [old])
    verify(trust(old), envelope, node="edge-a")
    error = refused(trust(old), envelope, node="edge-b")
    assert error.reason == signing.Reason.WRONG_NODE
    assert "'edge-a'" in str(error) and "'edge-b'" in str(error)


def test_the_signed_message_is_pinned() -> None:
    payload = b'{"metadata":{}}'
    message = signing.signed_message("edge-1", 42, AT, payload)
    assert message == (
        b"accord-signed-manifest/v2\nedge-1\n42\n2025-03-30T01:00:00.123456Z\n" + payload
    )


def test_the_sequence_is_signed(old: signing.SigningKey) -> None:
    envelope = sign(manifest(), "edge-1", [old], sequence=5)
    verify(trust(old), envelope)
    for moved in (4, 6, 50):
        forged = envelope.model_copy(update={"sequence": moved})
        assert refused(trust(old), forged).reason == signing.Reason.BAD_SIGNATURE


def test_a_v1_envelope_is_refused_as_malformed_saying_so(old: signing.SigningKey) -> None:
    # What a v1 control plane wrote: no sequence, the v1 tag in the signed message.
    payload = signing.canonical_bytes(manifest())
    v1_message = b"\n".join(
        (b"accord-signed-manifest/v1", b"edge-1", b"2025-03-30T01:00:00.123456Z", payload)
    )
    v1 = {
        "node": "edge-1",
        "signed_at": "2025-03-30T01:00:00.123456Z",
        "manifest": payload.decode(),
        "signatures": [
            {"key_id": old.key_id, "signature": base64.b64encode(old.sign(v1_message)).decode()}
        ],
    }
    with pytest.raises(signing.SignatureError) as info:
        signing.load_envelope(json.dumps(v1))
    assert info.value.reason == signing.Reason.MALFORMED
    assert "v1 envelope" in str(info.value) and "accord-signed-manifest/v2" in str(info.value)
    # Given a sequence, the v1 signature still does not verify: the tag and layout differ.
    with_sequence = signing.load_envelope(json.dumps({**v1, "sequence": 1}))
    assert refused(trust(old), with_sequence).reason == signing.Reason.BAD_SIGNATURE


def accepted(sequence: int, generation: int, content: str = "a") -> signing.Accepted:
    return signing.Accepted(sequence=sequence, generation=generation, digest=f"sha256:{content}")


@pytest.mark.parametrize(
    ("last", "offered", "replayed"),
    [
        (None, accepted(1, 1), False),  # nothing accepted yet
        (accepted(3, 5), accepted(4, 6), False),  # the next publish
        (accepted(3, 5), accepted(9, 6), False),  # gaps are fine (a lost compare-and-set)
        (accepted(9, 7, "big"), accepted(10, 2, "small"), False),  # reassigned: gen 7 → 2
        (accepted(10, 2, "small"), accepted(9, 7, "big"), True),  # the old one, replayed
        (accepted(10, 2), accepted(9, 3), True),  # a higher generation does not help
        (accepted(10, 2), accepted(10, 2), False),  # re-delivery, or a re-signing
        (accepted(10, 2, "a"), accepted(10, 2, "b"), True),  # a sequence cannot change
        (accepted(10, 2, "a"), accepted(10, 3, "b"), True),  # not even with a new generation
    ],
    ids=[
        "first", "next", "gap", "reassigned-lower-generation", "older-sequence",
        "older-sequence-higher-generation", "same", "same-sequence-other-bytes",
        "same-sequence-other-generation",
    ],
)  # fmt: skip
def test_replay_orders_by_publish_sequence_only(
    last: signing.Accepted | None, offered: signing.Accepted, replayed: bool
) -> None:
    if not replayed:
        signing._check_replay("site", offered, last)
        return
    with pytest.raises(signing.SignatureError) as info:
        signing._check_replay("site", offered, last)
    assert info.value.reason == signing.Reason.REPLAYED
    assert f"sequence {offered.sequence}" in str(info.value)


def test_a_reassigned_node_accepts_the_new_manifest_and_refuses_the_old_one(
    old: signing.SigningKey,
) -> None:
    big = parse_manifest(
        YAML.replace("name: site", "name: big").replace("generation: 3", "generation: 7"),
        source="big.yaml", kinds=KINDS,
    )  # fmt: skip
    small = parse_manifest(
        YAML.replace("name: site", "name: small").replace("generation: 3", "generation: 2"),
        source="small.yaml", kinds=KINDS,
    )  # fmt: skip
    old_big = sign(big, "edge-1", [old], sequence=9)
    on_big = verify(trust(old), old_big)
    on_small = verify(trust(old), sign(small, "edge-1", [old], sequence=10), last=on_big.accepted)
    assert on_small.accepted.generation == 2 and on_small.manifest.metadata.name == "small"
    error = refused(trust(old), old_big, last=on_small.accepted)
    assert error.reason == signing.Reason.REPLAYED
    assert "big generation 7" in str(error) and "accepted sequence 10" in str(error)


def test_an_older_sequence_is_a_replay(old: signing.SigningKey) -> None:
    current = verify(trust(old), sign(manifest(generation=5), "edge-1", [old], sequence=5))
    older = sign(manifest(generation=4), "edge-1", [old], sequence=4)
    error = refused(trust(old), older, last=current.accepted)
    assert error.reason == signing.Reason.REPLAYED
    assert "sequence 4" in str(error) and "sequence 5" in str(error)
    newer = sign(manifest(generation=6), "edge-1", [old], sequence=6)
    assert verify(trust(old), newer, last=current.accepted).accepted.generation == 6


def test_the_same_sequence_with_other_content_is_a_replay(old: signing.SigningKey) -> None:
    current = verify(trust(old), sign(manifest(), "edge-1", [old]))
    changed = sign(manifest(content="other\n"), "edge-1", [old])
    error = refused(trust(old), changed, last=current.accepted)
    assert error.reason == signing.Reason.REPLAYED


def test_the_same_sequence_and_content_is_accepted_again(
    old: signing.SigningKey, new: signing.SigningKey
) -> None:
    first = verify(trust(old, new), sign(manifest(), "edge-1", [old], signed_at=AT))
    # Re-delivered, and re-signed later with the new key as well: the content is the same.
    later = AT + timedelta(hours=1)
    again = sign(manifest(), "edge-1", [old, new], signed_at=later)
    assert verify(trust(old, new), again, last=first.accepted).accepted == first.accepted


def test_the_signed_text_must_be_json(old: signing.SigningKey) -> None:
    yaml_text = "metadata: {name: site}\n"
    message = signing.signed_message("edge-1", 1, AT, yaml_text.encode())
    signature = signing.Signature(
        key_id=old.key_id, signature=base64.b64encode(old.sign(message)).decode()
    )
    envelope = signing.SignedManifest(
        node="edge-1", sequence=1, signed_at=AT, manifest=yaml_text, signatures=(signature,)
    )
    assert refused(trust(old), envelope).reason == signing.Reason.MALFORMED


def test_an_authentic_manifest_with_a_kind_outside_the_allow_list_is_a_manifest_error(
    old: signing.SigningKey,
) -> None:
    envelope = sign(manifest(), "edge-1", [old])
    allowed = {kind: spec for kind, spec in KINDS.items() if kind != "Symlink"}
    with pytest.raises(errors.ManifestError, match="unknown kind 'Symlink'") as info:
        trust(old).verify(envelope, node="edge-1", kinds=allowed)
    assert signing.condition_for(info.value).reason == "InvalidManifest"


@pytest.mark.parametrize(
    "wire",
    [
        b"not json",
        b"{}",
        b'{"node": "edge 1", "signed_at": "2025-03-30T01:00:00Z", "manifest": "{}"}',
        b'{"node": "edge-1", "signed_at": "2025-03-30T01:00:00", "manifest": "{}"}',
        b'{"node": "edge-1", "signed_at": "2025-03-30T01:00:00Z", "manifest": "{}", "x": 1}',
        b'{"node": "edge-1", "sequence": 0, "signed_at": "2025-03-30T01:00:00Z", "manifest": "{}"}',
        b'{"node": "edge-1", "sequence": "7x", "signed_at": "2025-03-30T01:00:00Z", '
        b'"manifest": "{}"}',
    ],
    ids=[
        "not-json",
        "empty",
        "bad-node",
        "naive-time",
        "unsigned-extra-field",
        "sequence-0",
        "sequence-not-a-number",
    ],
)
def test_what_is_not_an_envelope_is_malformed(wire: bytes) -> None:
    with pytest.raises(signing.SignatureError) as info:
        signing.load_envelope(wire)
    assert info.value.reason == signing.Reason.MALFORMED
    assert "malformed" in str(info.value)


# --- rotation -------------------------------------------------------------------------------


def test_rotation_old_and_new_signatures_are_accepted_by_any_pinned_set(
    old: signing.SigningKey, new: signing.SigningKey
) -> None:
    both = sign(manifest(), "edge-1", [old, new])
    assert verify(trust(old), both).key_ids == (old.key_id,)
    assert verify(trust(new), both).key_ids == (new.key_id,)
    assert verify(trust(old, new), both).key_ids == (old.key_id, new.key_id)


def test_rotation_a_manifest_signed_only_by_the_old_key_lasts_while_it_is_trusted(
    old: signing.SigningKey, new: signing.SigningKey
) -> None:
    only_old = sign(manifest(), "edge-1", [old])
    verify(trust(old, new), only_old)
    assert refused(trust(new), only_old).reason == signing.Reason.UNKNOWN_KEY


def test_rotation_a_manifest_signed_only_by_the_new_key_needs_it_pinned(
    old: signing.SigningKey, new: signing.SigningKey
) -> None:
    only_new = sign(manifest(), "edge-1", [new])
    assert refused(trust(old), only_new).reason == signing.Reason.UNKNOWN_KEY
    verify(trust(old, new), only_new)


def test_one_good_signature_by_a_pinned_key_is_enough(
    old: signing.SigningKey, new: signing.SigningKey
) -> None:
    both = sign(manifest(), "edge-1", [old, new])
    broken = both.signatures[0].model_copy(update={"signature": "not base64!"})
    mixed = both.model_copy(update={"signatures": (broken, both.signatures[1])})
    assert verify(trust(old, new), mixed).key_ids == (new.key_id,)
    assert refused(trust(old), mixed).reason == signing.Reason.BAD_SIGNATURE


# --- property: any single flipped byte is refused -------------------------------------------


@pytest.fixture(scope="module")
def signed() -> tuple[signing.SigningKey, signing.SignedManifest]:
    key = signing.SigningKey.generate()
    return key, sign(manifest(), "edge-1", [key], signed_at=AT)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), mask=st.integers(min_value=1, max_value=255))
def test_flipping_any_byte_of_the_signed_bytes_or_the_signature_is_refused(
    signed: tuple[signing.SigningKey, signing.SignedManifest], data: st.DataObject, mask: int
) -> None:
    key, envelope = signed
    store = trust(key)
    payload = bytearray(envelope.manifest.encode("utf-8"))
    signature = bytearray(base64.b64decode(envelope.signatures[0].signature))
    if data.draw(st.booleans(), label="flip the manifest"):
        index = data.draw(st.integers(0, len(payload) - 1), label="index")
        payload[index] ^= mask
        # An invalid UTF-8 result still reaches verify, carried as surrogate escapes.
        text = bytes(payload).decode("utf-8", errors="surrogateescape")
        tampered = envelope.model_copy(update={"manifest": text})
    else:
        index = data.draw(st.integers(0, len(signature) - 1), label="index")
        signature[index] ^= mask
        sig = envelope.signatures[0].model_copy(
            update={"signature": base64.b64encode(bytes(signature)).decode()}
        )
        tampered = envelope.model_copy(update={"signatures": (sig,)})
    with pytest.raises(signing.SignatureError) as info:
        verify(store, tampered)
    assert info.value.reason in (signing.Reason.BAD_SIGNATURE, signing.Reason.MALFORMED)


# --- keys -----------------------------------------------------------------------------------


def test_key_id_is_a_short_fingerprint_of_the_public_key(old: signing.SigningKey) -> None:
    import hashlib

    assert old.key_id == hashlib.sha256(old.verify_key.raw).hexdigest()[:16]
    assert len(old.key_id) == 16 and old.key_id != signing.SigningKey.generate().key_id
    assert old.key_id in repr(old) and "PRIVATE" not in repr(old)


@pytest.mark.parametrize("encoding", ["pem", "base64"])
def test_keys_round_trip_through_files_and_the_private_one_is_0600(
    tmp_path: Path, encoding: Any
) -> None:
    key = signing.SigningKey.generate()
    private, public = tmp_path / "signing.key", tmp_path / "signing.pub"
    key.save(private, encoding=encoding)
    key.verify_key.save(public, encoding=encoding)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signing.key", "signing.pub"]
    loaded = signing.SigningKey.load(private)
    assert loaded.key_id == key.key_id
    assert signing.VerifyKey.load(public) == key.verify_key
    envelope = sign(manifest(), "edge-1", [loaded])
    verify(signing.TrustStore.from_files([public]), envelope)


def test_the_private_key_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    import os

    previous = os.umask(0)
    try:
        signing.SigningKey.generate().save(tmp_path / "signing.key")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "signing.key").stat().st_mode) == 0o600


def test_saving_never_replaces_a_key_unless_asked(tmp_path: Path) -> None:
    first, second = signing.SigningKey.generate(), signing.SigningKey.generate()
    path = tmp_path / "signing.key"
    first.save(path)
    with pytest.raises(errors.InputError, match="already exists"):
        second.save(path)
    assert signing.SigningKey.load(path).key_id == first.key_id
    second.save(path, overwrite=True)
    assert signing.SigningKey.load(path).key_id == second.key_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["signing.key"]  # no temp files left


def test_key_files_of_the_wrong_kind_or_no_key_are_input_errors(tmp_path: Path) -> None:
    key = signing.SigningKey.generate()
    key.save(tmp_path / "signing.key")
    key.verify_key.save(tmp_path / "signing.pub")
    with pytest.raises(errors.InputError, match="a private key"):
        signing.VerifyKey.load(tmp_path / "signing.key")
    with pytest.raises(errors.InputError, match="a public key"):
        signing.SigningKey.load(tmp_path / "signing.pub")
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("hello\n")
    with pytest.raises(errors.InputError, match="not an ed25519 key"):
        signing.load_key(garbage)
    with pytest.raises(errors.InputError, match="No such file"):
        signing.load_key(tmp_path / "missing.pub")


def test_a_trust_store_from_a_directory_pins_every_pub_file_and_needs_one(
    tmp_path: Path, old: signing.SigningKey, new: signing.SigningKey
) -> None:
    with pytest.raises(errors.InputError, match=r"no \*\.pub keys"):
        signing.TrustStore.from_dir(tmp_path)
    with pytest.raises(errors.InputError, match="at least one"):
        signing.TrustStore([])
    old.verify_key.save(tmp_path / "old.pub")
    new.verify_key.save(tmp_path / "new.pub", encoding="base64")
    old.save(tmp_path / "old.key")  # not a *.pub: never trusted, never loaded
    store = signing.TrustStore.from_dir(tmp_path)
    assert store.key_ids == tuple(sorted((old.key_id, new.key_id)))
    assert old.key_id in store and "x" not in store


def test_sign_refuses_no_keys_a_repeated_key_a_bad_node_and_a_bad_sequence(
    old: signing.SigningKey,
) -> None:
    with pytest.raises(errors.InputError, match="at least one key"):
        sign(manifest(), "edge-1", [])
    with pytest.raises(errors.InputError, match="twice"):
        sign(manifest(), "edge-1", [old, old])
    with pytest.raises(errors.InputError, match="not a node id"):
        sign(manifest(), "edge\n1", [old])
    for sequence in (0, -1, signing.MAX_SEQUENCE + 1):
        with pytest.raises(errors.InputError, match="publish sequence"):
            sign(manifest(), "edge-1", [old], sequence=sequence)


# --- conditions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (signing.Reason.UNSIGNED, "Unsigned"),
        (signing.Reason.UNKNOWN_KEY, "UnknownKey"),
        (signing.Reason.BAD_SIGNATURE, "BadSignature"),
        (signing.Reason.WRONG_NODE, "WrongNode"),
        (signing.Reason.REPLAYED, "Replayed"),
        (signing.Reason.MALFORMED, "Malformed"),
    ],
)
def test_every_refusal_becomes_a_false_manifest_verified_condition(
    reason: signing.Reason, expected: str
) -> None:
    error = signing.SignatureError(reason, "details")
    assert isinstance(error, errors.InputError)
    condition = signing.condition_for(error, observed_generation=4)
    assert condition.type == "ManifestVerified"
    assert condition.status == ConditionStatus.FALSE
    assert condition.reason == expected
    assert condition.message == f"manifest refused ({reason.value}): details"
    assert condition.observed_generation == 4


def test_an_accepted_manifest_becomes_a_true_condition(old: signing.SigningKey) -> None:
    verified = verify(trust(old), sign(manifest(generation=7), "edge-1", [old]))
    condition = signing.verified_condition(verified)
    assert (condition.type, condition.status, condition.reason) == (
        "ManifestVerified", ConditionStatus.TRUE, "Verified",
    )  # fmt: skip
    assert condition.observed_generation == 7 and old.key_id in condition.message
