"""Path confinement: ``Roots`` and how the file-like providers keep writes inside the roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from accord import errors
from accord.model.plan import Action
from accord.model.specs import DirectorySpec, FileSpec, SymlinkSpec
from accord.providers.base import Context
from accord.providers.cache import Cache
from accord.providers.directory import DirectoryProvider
from accord.providers.file import FileProvider
from accord.providers.paths import Roots
from accord.providers.symlink import SymlinkProvider
from accord.testing.provider_contract import tree

RID = "web/config"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_bytes(b"outside bytes\n")
    return tmp_path / "outside"


@pytest.fixture
def roots(root: Path) -> Roots:
    return Roots([root])


@pytest.fixture
def ctx(tmp_path: Path, roots: Roots) -> Context:
    return Context(
        roots=roots,
        state_dir=tmp_path / "state",
        cache=Cache(tmp_path / "state" / "cache"),
        base_dir=tmp_path,
    ).bind(RID)


def escape(match: str) -> pytest.RaisesExc[errors.PathEscapeError]:
    """PathEscapeError whose message names the resource and matches ``match``."""
    return pytest.raises(errors.PathEscapeError, match=rf"(?s)'{RID}'.*{match}")


# Roots.resolve


def test_relative_paths_resolve_under_the_first_root(roots: Roots, root: Path) -> None:
    assert roots.resolve("etc/app.conf") == root / "etc" / "app.conf"
    assert roots.resolve("./etc//app.conf") == root / "etc" / "app.conf"
    assert roots.primary == root


def test_absolute_paths_inside_a_root_are_kept(roots: Roots, root: Path) -> None:
    assert roots.resolve(str(root / "a" / "b")) == root / "a" / "b"


@pytest.mark.parametrize("path", ["..", "../x", "a/../../x", "a/../b", "/etc/../x"])
def test_dot_dot_is_refused_even_when_it_would_stay_inside(roots: Roots, path: str) -> None:
    with pytest.raises(errors.PathEscapeError, match=r"web/config.*contains '\.\.'"):
        roots.resolve(path, resource=RID)


def test_absolute_paths_outside_the_roots_are_refused(roots: Roots, root: Path) -> None:
    with escape("outside the roots"):
        roots.resolve("/etc/passwd", resource=RID)
    with escape("outside the roots"):  # a sibling sharing the root's name as a prefix
        roots.resolve(f"{root}2/x", resource=RID)


def test_the_message_without_a_resource_still_names_the_path(roots: Roots) -> None:
    with pytest.raises(errors.PathEscapeError, match="'/etc/passwd' is outside") as caught:
        roots.resolve("/etc/passwd")
    assert "resource" not in str(caught.value)


def test_several_roots(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    roots = Roots([first, second])
    assert roots.resolve("x") == first / "x"  # relative: always the first root
    assert roots.resolve(str(second / "y")) == second / "y"
    assert roots.contains(str(second / "y")) and not roots.contains(str(tmp_path / "z"))
    with escape("outside the roots"):
        roots.resolve(str(tmp_path / "third" / "z"), resource=RID)


def test_no_roots_is_an_input_error() -> None:
    with pytest.raises(errors.InputError, match="at least one root"):
        Roots([])


def test_a_symlinked_parent_escaping_the_root_is_refused(
    roots: Roots, root: Path, outside: Path
) -> None:
    os.symlink(outside, root / "etc")
    with escape("escapes root .* through a symlink"):
        roots.resolve("etc/secret", resource=RID)
    with escape("through a symlink"):  # deeper below the link too
        roots.resolve("etc/a/b", resource=RID)


def test_a_symlinked_parent_staying_inside_is_allowed(roots: Roots, root: Path) -> None:
    (root / "real").mkdir()
    os.symlink("real", root / "alias")
    assert roots.resolve("alias/app.conf") == root / "alias" / "app.conf"


def test_the_final_component_is_not_followed(roots: Roots, root: Path, outside: Path) -> None:
    # Providers lstat the final component and replace a link rather than write through it.
    os.symlink(outside / "secret", root / "app.conf")
    assert roots.resolve("app.conf") == root / "app.conf"


def test_recheck_sees_a_tree_that_changed_after_resolve(
    roots: Roots, root: Path, outside: Path
) -> None:
    (root / "etc").mkdir()
    path = roots.resolve("etc/app.conf", resource=RID)
    os.rmdir(root / "etc")
    os.symlink(outside, root / "etc")  # swapped for a link out of the root after observe
    with escape("through a symlink"):
        roots.recheck(path, resource=RID)


def test_recheck_passes_when_the_tree_changed_harmlessly(roots: Roots, root: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc.new").mkdir()
    path = roots.resolve("etc/app.conf", resource=RID)
    os.rmdir(root / "etc")
    os.symlink("etc.new", root / "etc")
    roots.recheck(path, resource=RID)


def test_a_root_itself_resolves(roots: Roots, root: Path) -> None:
    assert roots.resolve(".") == root
    assert roots.resolve(str(root)) == root


def test_a_root_configured_through_a_symlink_accepts_its_own_spelling(
    tmp_path: Path, root: Path
) -> None:
    os.symlink(root, tmp_path / "alias")
    assert Roots([tmp_path / "alias"]).resolve(str(tmp_path / "alias" / "x")) == root / "x"


# Symlink targets


@pytest.mark.parametrize(
    "target",
    ["{outside}/secret", "../outside/secret", "..", "sub/../../outside", "/"],
)
async def test_symlink_targets_outside_the_roots_are_refused(
    ctx: Context, root: Path, outside: Path, target: str
) -> None:
    spec = SymlinkSpec(path="link", target=target.format(outside=outside))
    with escape("outside the roots"):
        await SymlinkProvider().observe(ctx, spec)
    assert not os.path.lexists(root / "link")


@pytest.mark.parametrize("target", ["{root}/data", "data", "sub/../data", "./data", "."])
async def test_symlink_targets_inside_the_roots_are_allowed(
    ctx: Context, root: Path, target: str
) -> None:
    spec = SymlinkSpec(path="link", target=target.format(root=root))
    assert await SymlinkProvider().observe(ctx, spec) is None


async def test_symlink_targets_resolve_from_the_links_directory(ctx: Context) -> None:
    # "../x" from root/a/link is root/x: inside; from root/link it is outside.
    provider = SymlinkProvider()
    assert await provider.observe(ctx, SymlinkSpec(path="a/link", target="../x")) is None
    with escape("outside the roots"):
        await provider.observe(ctx, SymlinkSpec(path="link", target="../x"))


async def test_symlink_target_in_a_second_root_is_allowed(tmp_path: Path, root: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    ctx = Context(
        roots=Roots([root, other]), state_dir=tmp_path / "s", cache=Cache(tmp_path / "s" / "c")
    )
    spec = SymlinkSpec(path="link", target=str(other / "data"))
    assert await SymlinkProvider().observe(ctx, spec) is None


# File never reads or writes through a symlink at its own path


async def test_file_does_not_read_through_a_link_at_its_path(
    ctx: Context, root: Path, outside: Path
) -> None:
    os.symlink(outside / "secret", root / "app.conf")
    provider = FileProvider()
    spec = FileSpec(path="app.conf", content="outside bytes\n")  # the same bytes as behind it
    current = await provider.observe(ctx, spec)
    assert current is not None and current.type == "symlink" and current.sha256 is None
    assert provider.diff(spec, current).action is Action.UPDATE


async def test_file_replaces_a_link_at_its_path_and_leaves_the_target_alone(
    ctx: Context, root: Path, outside: Path
) -> None:
    os.symlink(outside / "secret", root / "app.conf")
    before = tree(outside)
    provider = FileProvider()
    spec = FileSpec(path="app.conf", content="mine\n", mode="0600")
    await provider.apply(ctx, spec, await provider.observe(ctx, spec))
    assert not os.path.islink(root / "app.conf")
    assert (root / "app.conf").read_bytes() == b"mine\n"
    assert os.stat(root / "app.conf").st_mode & 0o7777 == 0o600
    assert tree(outside) == before  # bytes, mode and mtime of the target untouched


async def test_file_at_a_link_with_matching_content_fixes_only_the_mode_of_the_file_not_target(
    ctx: Context, root: Path, outside: Path
) -> None:
    # A mode-only difference must not chmod through the link either.
    os.symlink(outside / "secret", root / "app.conf")
    os.chmod(outside / "secret", 0o644)
    before = tree(outside)
    provider = FileProvider()
    spec = FileSpec(path="app.conf", content="outside bytes\n", mode="0600")
    await provider.apply(ctx, spec, await provider.observe(ctx, spec))
    assert tree(outside) == before
    assert not os.path.islink(root / "app.conf")


async def test_directory_replaces_a_link_at_its_path_and_leaves_the_target_alone(
    ctx: Context, root: Path, outside: Path
) -> None:
    os.symlink(outside, root / "data")
    before = tree(outside)
    provider = DirectoryProvider()
    spec = DirectorySpec(path="data", mode="0700")
    await provider.apply(ctx, spec, await provider.observe(ctx, spec))
    assert os.path.isdir(root / "data") and not os.path.islink(root / "data")
    assert tree(outside) == before


async def test_file_under_an_escaping_parent_is_refused_before_any_write(
    ctx: Context, root: Path, outside: Path
) -> None:
    os.symlink(outside, root / "etc")
    before = tree(outside)
    with escape("through a symlink"):
        await FileProvider().observe(ctx, FileSpec(path="etc/app.conf", content="x"))
    assert tree(outside) == before


async def test_apply_rechecks_a_parent_swapped_after_observe(
    ctx: Context, root: Path, outside: Path
) -> None:
    provider = FileProvider()
    spec = FileSpec(path="etc/app.conf", content="x")
    (root / "etc").mkdir()
    current = await provider.observe(ctx, spec)  # resolves (and caches) etc while it is real
    os.rmdir(root / "etc")
    os.symlink(outside, root / "etc")
    before = tree(outside)
    with escape("through a symlink"):
        await provider.apply(ctx, spec, current)
    assert tree(outside) == before


async def test_delete_rechecks_a_parent_swapped_after_observe(
    ctx: Context, root: Path, outside: Path
) -> None:
    provider = FileProvider()
    spec = FileSpec(path="etc/secret", content="x")
    (root / "etc").mkdir()
    (root / "etc" / "secret").write_bytes(b"prior\n")
    memo = await provider.snapshot(ctx, spec, await provider.observe(ctx, spec))
    os.rename(root / "etc", root / "etc.old")
    os.symlink(outside, root / "etc")
    before = tree(outside)
    with escape("through a symlink"):
        await provider.delete(ctx, spec, memo)
    assert tree(outside) == before
