"""Parse and validate manifests from YAML or JSON text, with errors that point at the line.

Validation is one pydantic pass over a model built from the registered kinds (a discriminated
union on ``kind``), then the checks pydantic cannot express (unique ids, known dependencies).
Line numbers are looked up only when something is wrong, so the happy path pays nothing for them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union, cast

import yaml
from pydantic import Field, ValidationError, create_model

from accord import errors
from accord.model.manifest import Manifest, Resource
from accord.model.specs import Spec
from accord.model.yamlpos import LOADER, Locator


@functools.lru_cache(maxsize=8)
def _typed_model(kinds: tuple[tuple[str, type[Spec]], ...]) -> type[Manifest]:
    variants = tuple(
        create_model(
            f"{kind}Resource",
            __base__=Resource,
            kind=(cast(Any, Literal[kind]), ...),
            spec=(spec_model, ...),
        )
        for kind, spec_model in kinds
    )
    if not variants:
        raise errors.UnknownKindError("no resource kinds are registered")
    resource: Any = variants[0]
    if len(variants) > 1:
        resource = Annotated[Union[variants], Field(discriminator="kind")]  # noqa: UP007
    return create_model("Manifest", __base__=Manifest, resources=(tuple[resource, ...], ()))


def manifest_model(kinds: Mapping[str, type[Spec]]) -> type[Manifest]:
    """The pydantic model of manifests whose resources are of the given kinds."""
    return _typed_model(tuple(sorted(kinds.items())))


def json_schema(kinds: Mapping[str, type[Spec]]) -> dict[str, Any]:
    """The JSON Schema of manifests over the given kinds."""
    return manifest_model(kinds).model_json_schema()


def parse_manifest(text: str, *, source: str, kinds: Mapping[str, type[Spec]]) -> Manifest:
    """Parse and validate a manifest.

    Args:
        text: YAML or JSON.
        source: a name for messages, usually the file path.
        kinds: the spec model of every kind allowed in it.

    Raises:
        ManifestError: listing every problem with its line, resource id and field.
    """
    model = manifest_model(kinds)
    try:
        if text.lstrip().startswith("{"):  # JSON: parsed and validated in one pass, in Rust
            manifest = model.model_validate_json(text)
        else:
            manifest = model.model_validate(_parse(text, source))
    except ValidationError as exc:
        data = _parse(text, source)  # a JSON syntax error raises here, with its line
        locate = Locator(text)
        raise errors.ManifestError(
            source, [_describe(err, data, locate, source, kinds) for err in exc.errors()]
        ) from None
    problems = _check_references(manifest, text, source)
    if problems:
        raise errors.ManifestError(source, problems)
    return manifest


def _parse(text: str, source: str) -> Any:
    try:
        if text.lstrip().startswith("{"):
            return json.loads(text)
        return yaml.load(text, Loader=LOADER)
    except json.JSONDecodeError as exc:
        raise errors.ManifestError(source, [f"{source}:{exc.lineno}: {exc.msg}"]) from None
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise errors.ManifestError(source, [f"{source}:{line}: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise errors.ManifestError(source, [f"{source}: {exc}"]) from None


def _check_references(manifest: Manifest, text: str, source: str) -> list[str]:
    """Unique ids, and known ids in ``depends_on`` and in what specs reference (``restart_on``).

    Lines are looked up only for what is wrong.
    """
    ids = {r.id for r in manifest.resources}
    if len(ids) == len(manifest.resources) and all(
        dep in ids and dep != r.id for r in manifest.resources for dep in r.predecessors
    ):
        return []
    locate = Locator(text)
    problems: list[str] = []
    seen: set[str] = set()
    for index, resource in enumerate(manifest.resources):
        if resource.id in seen:
            line = locate(("resources", index))
            problems.append(f"{source}:{line}: resource {resource.id!r}: duplicate id")
        seen.add(resource.id)
        named: list[tuple[tuple[Any, ...], str, str]] = [
            (("depends_on", position), "depends_on", dep)
            for position, dep in enumerate(resource.depends_on)
        ]
        named += [
            (("spec", field, position), f"spec.{field}", ref)
            for field, refs in resource.spec.references().items()
            for position, ref in enumerate(refs)
        ]
        for where, field, ref in named:
            if ref in ids and ref != resource.id:
                continue
            line = locate(("resources", index, *where))
            if ref == resource.id:
                what = "depends on itself" if field == "depends_on" else f"{field}: names itself"
            else:
                what = f"{field}: unknown id {ref!r}"
            problems.append(f"{source}:{line}: resource {resource.id!r}: {what}")
    return problems


def _describe(
    err: Any, data: Any, locate: Locator, source: str, kinds: Mapping[str, type[Spec]]
) -> str:
    loc: tuple[Any, ...] = tuple(err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        message = f"unknown kind {tag!r}; known kinds: {', '.join(sorted(kinds))}"
        loc = (*loc, "kind")
    elif err["type"] == "union_tag_not_found":
        message = "missing 'kind'"
    # Drop the union tag pydantic puts after the index: ("resources", 3, "File", ...)
    if len(loc) > 2 and loc[0] == "resources" and isinstance(loc[1], int) and loc[2] in kinds:
        loc = (*loc[:2], *loc[3:])
    subject = ""
    if len(loc) >= 2 and loc[0] == "resources" and isinstance(loc[1], int):
        resource = _index(data, ("resources", loc[1]))
        rid = resource.get("id") if isinstance(resource, dict) else None
        kind = resource.get("kind") if isinstance(resource, dict) else None
        subject = f"resource {rid!r}" if rid else f"resources[{loc[1]}]"
        if kind:
            subject += f" ({kind})"
        subject += ": "
        field = ".".join(str(part) for part in loc[2:])
    else:
        field = ".".join(str(part) for part in loc)
    return f"{source}:{locate(loc)}: {subject}{field or 'manifest'}: {message}"


def _index(data: Any, path: Sequence[Any]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data
