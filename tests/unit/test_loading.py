import json
from collections.abc import Mapping

import pytest

from accord import errors
from accord.model.loading import json_schema, parse_manifest
from accord.model.specs import CommandSpec, DirectorySpec, FileSpec, Spec, SymlinkSpec

KINDS = {
    "File": FileSpec,
    "Directory": DirectorySpec,
    "Symlink": SymlinkSpec,
    "Command": CommandSpec,
}

GOOD = """\
api_version: accord/v1
metadata:
  name: demo
  generation: 3
resources:
  - id: dir
    kind: Directory
    spec: {path: etc/app, mode: "0750"}
  - id: conf
    kind: File
    depends_on: [dir]
    spec:
      path: etc/app/app.conf
      content: "x = 1\\n"
      mode: 0644
"""


def problems(text: str) -> list[str]:
    with pytest.raises(errors.ManifestError) as info:
        parse_manifest(text, source="site.yaml", kinds=KINDS)
    return info.value.problems


def test_a_good_manifest_loads_typed_specs() -> None:
    manifest = parse_manifest(GOOD, source="site.yaml", kinds=KINDS)
    assert manifest.metadata.generation == 3
    conf = manifest.resources[1]
    assert isinstance(conf.spec, FileSpec) and conf.spec.mode == 0o644
    assert conf.depends_on == ("dir",)
    assert isinstance(manifest.resources[0].spec, DirectorySpec)
    assert manifest.resources[0].spec.mode == 0o750


def test_json_round_trip_keeps_octal_modes_readable() -> None:
    manifest = parse_manifest(GOOD, source="site.yaml", kinds=KINDS)
    data = json.loads(manifest.model_dump_json())
    assert data["resources"][1]["spec"]["mode"] == "0644"
    again = parse_manifest(json.dumps(data), source="site.json", kinds=KINDS)
    assert again == manifest


def test_field_errors_name_line_resource_kind_and_field() -> None:
    found = problems(GOOD.replace("mode: 0644", "mode: '0999'"))
    assert found == [
        "site.yaml:15: resource 'conf' (File): spec.mode: "
        "mode '0999' is not an octal permission such as '0644'"
    ]


def test_unknown_fields_are_errors_not_silently_ignored() -> None:
    found = problems(GOOD.replace("mode: 0644", "moed: 0644"))
    assert len(found) == 1 and "site.yaml:15: resource 'conf' (File): spec.moed" in found[0]


def test_unknown_kind_lists_the_known_ones() -> None:
    found = problems(GOOD.replace("kind: Directory", "kind: Direktory"))
    assert found[0].startswith("site.yaml:7: resource 'dir' (Direktory): kind: unknown kind")
    assert "Directory, File, Symlink" in found[0]


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace("mode: 0644", "mode: '9'").replace("path: etc/app, ", "")
    assert len(problems(text)) == 2


def test_duplicate_ids_and_unknown_dependencies() -> None:
    found = problems(GOOD.replace("id: conf", "id: dir").replace("[dir]", "[nope]"))
    assert "site.yaml:9: resource 'dir': duplicate id" in found
    assert "site.yaml:11: resource 'dir': depends_on: unknown id 'nope'" in found


def test_file_needs_exactly_one_source() -> None:
    found = problems(GOOD.replace('      content: "x = 1\\n"\n', ""))
    assert "give exactly one of 'content' or 'source'" in found[0]


def test_yaml_syntax_errors_name_the_line() -> None:
    found = problems("metadata:\n  name: [unclosed\nresources: []\n")
    assert found[0].startswith("site.yaml:3:")


def test_json_syntax_errors_name_the_line() -> None:
    with pytest.raises(errors.ManifestError, match=r"site.json:2:"):
        parse_manifest('{"metadata":\n  {"name": }}', source="site.json", kinds=KINDS)


def test_schema_has_one_variant_per_kind() -> None:
    schema = json_schema(KINDS)
    text = json.dumps(schema)
    for kind in KINDS:
        assert f"{kind}Spec" in schema["$defs"], kind
    assert '"0644"' in text  # modes are documented as octal strings


def test_date_like_values_stay_text_and_impossible_dates_are_not_a_crash() -> None:
    text = GOOD.replace('content: "x = 1\\n"', "content: 2026-02-30")
    manifest = parse_manifest(text, source="site.yaml", kinds=KINDS)
    conf = manifest.resources[1].spec
    assert isinstance(conf, FileSpec) and conf.content == "2026-02-30"


class NotifySpec(Spec):
    """A kind whose spec names other resources, as ``SystemdUnit.restart_on`` does."""

    notify: tuple[str, ...] = ()

    def references(self) -> Mapping[str, tuple[str, ...]]:
        return {"notify": self.notify}


REFERRING = """\
metadata: {name: demo}
resources:
  - id: dir
    kind: Directory
    spec: {path: etc/app}
  - id: tell
    kind: Notify
    depends_on: [dir]
    spec:
      notify:
        - dir
        - nope
        - tell
"""


def test_ids_a_spec_references_must_exist_and_name_their_line() -> None:
    kinds = {**KINDS, "Notify": NotifySpec}
    with pytest.raises(errors.ManifestError) as info:
        parse_manifest(REFERRING, source="site.yaml", kinds=kinds)
    assert info.value.problems == [
        "site.yaml:12: resource 'tell': spec.notify: unknown id 'nope'",
        "site.yaml:13: resource 'tell': spec.notify: names itself",
    ]


def test_referenced_ids_order_a_resource_like_depends_on() -> None:
    text = """\
metadata: {name: demo}
resources:
  - {id: dir, kind: Directory, spec: {path: etc/app}}
  - {id: more, kind: Directory, spec: {path: srv}}
  - {id: tell, kind: Notify, depends_on: [dir], spec: {notify: [more, dir]}}
"""
    manifest = parse_manifest(text, source="site.yaml", kinds={**KINDS, "Notify": NotifySpec})
    tell = manifest.resources[2]
    assert tell.depends_on == ("dir",)
    assert tell.predecessors == ("dir", "more")  # depends_on first, without repeats
    assert manifest.resources[0].predecessors == ()
