"""``accord keys generate | show`` through Typer's runner, over real key files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import typer
from typer.testing import CliRunner

from accord import signing
from accord.cli import keys

runner = CliRunner()


def accord(*args: str | Path) -> tuple[int, str, str]:
    # Mounted the way the root app mounts command groups, so `keys generate` is what a user types.
    root = typer.Typer()
    root.add_typer(keys.app, name="keys")
    result = runner.invoke(root, ["keys", *(str(a) for a in args)])
    return result.exit_code, result.stdout, result.stderr


def test_generate_writes_a_private_key_0600_and_a_public_key(tmp_path: Path) -> None:
    where = tmp_path / "keys"
    code, out, err = accord("generate", where)
    assert code == 0, err
    private, public = where / "signing.key", where / "signing.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(where.stat().st_mode) == 0o700
    key = signing.SigningKey.load(private)
    assert signing.VerifyKey.load(public) == key.verify_key
    assert f"key {key.key_id} (ed25519)" in out and "signing.pub" in out
    assert "PRIVATE" not in out


def test_generate_json_names_the_key_and_the_files(tmp_path: Path) -> None:
    code, out, err = accord("generate", tmp_path, "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document == {
        "key_id": signing.SigningKey.load(tmp_path / "signing.key").key_id,
        "algorithm": "ed25519",
        "private_key": str(tmp_path / "signing.key"),
        "public_key": str(tmp_path / "signing.pub"),
    }


def test_generate_never_replaces_keys_without_force(tmp_path: Path) -> None:
    assert accord("generate", tmp_path)[0] == 0
    first = signing.SigningKey.load(tmp_path / "signing.key").key_id
    code, out, err = accord("generate", tmp_path)
    assert code == 2 and out == ""
    assert "signing.key: already exists (--force replaces it)" in err
    assert signing.SigningKey.load(tmp_path / "signing.key").key_id == first
    # Half a pair (only the public key left behind) is refused too.
    (tmp_path / "signing.key").unlink()
    assert accord("generate", tmp_path)[0] == 2
    assert not (tmp_path / "signing.key").exists()
    code, _, err = accord("generate", tmp_path, "--force", "--json")
    assert code == 0, err
    replaced = signing.SigningKey.load(tmp_path / "signing.key")
    assert replaced.key_id != first
    assert signing.VerifyKey.load(tmp_path / "signing.pub") == replaced.verify_key


def test_show_gives_the_id_of_a_private_or_a_public_key_and_never_the_private_key(
    tmp_path: Path,
) -> None:
    assert accord("generate", tmp_path)[0] == 0
    key = signing.SigningKey.load(tmp_path / "signing.key")
    private_text = (tmp_path / "signing.key").read_text()
    for name, kind in (("signing.key", "private"), ("signing.pub", "public")):
        code, out, err = accord("show", tmp_path / name, "--json")
        assert code == 0, err
        assert json.loads(out) == {
            "file": str(tmp_path / name),
            "key_id": key.key_id,
            "algorithm": "ed25519",
            "type": kind,
            "public_key": key.verify_key.text(),
        }
        code, out, _ = accord("show", tmp_path / name)
        assert code == 0
        assert f"{kind} key {key.key_id} (ed25519)" in out
        assert not any(line in out for line in private_text.splitlines()[1:-1])


def test_show_accepts_base64_key_files(tmp_path: Path) -> None:
    key = signing.SigningKey.generate()
    key.verify_key.save(tmp_path / "pinned.pub", encoding="base64")
    code, out, err = accord("show", tmp_path / "pinned.pub", "--json")
    assert code == 0, err
    assert json.loads(out)["key_id"] == key.key_id


def test_show_reports_a_missing_or_bad_file_as_bad_input(tmp_path: Path) -> None:
    code, out, err = accord("show", tmp_path / "missing.pub")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "missing.pub: No such file or directory" in err
    (tmp_path / "notes.txt").write_text("not a key\n")
    code, _, err = accord("show", tmp_path / "notes.txt", "--json")
    assert code == 2 and "not an ed25519 key" in err
