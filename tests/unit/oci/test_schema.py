import copy
import json
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockyard.errors import InvalidArgument
from dockyard.oci.defaults import default_spec
from dockyard.oci.schema import (
    IMAGE_SCHEMA_DIR,
    RUNTIME_SCHEMA_DIR,
    Validator,
    format_path,
    validate_runtime_config,
)


def config_with(path: str, value):
    """The default spec with the value at a dotted path ("process.args", "mounts.0.type")
    replaced; the value DELETE removes it."""
    config = default_spec()
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        last = int(last)
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return config


DELETE = object()


def test_default_config_is_valid():
    validate_runtime_config(default_spec())


def test_minimal_config_is_valid():
    validate_runtime_config({"ociVersion": "1.2.0"})


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("process.args", "sh", "process.args: expected array, got string"),
        ("process.args", ["sh", 1], "process.args[1]: expected string, got integer"),
        ("process.cwd", DELETE, "process: missing required property 'cwd'"),
        ("ociVersion", DELETE, "missing required property 'ociVersion'"),
        ("process.terminal", 1, "process.terminal: expected boolean, got integer"),
        ("process.user.uid", True, "process.user.uid: expected integer, got boolean"),
        ("process.user.uid", 1.5, "process.user.uid: expected integer, got number"),
        ("process.user.uid", -1, "process.user.uid: -1 is less than the minimum of 0"),
        ("process.user.gid", 2**32,
         "process.user.gid: 4294967296 is greater than the maximum of 4294967295"),
        ("process.rlimits.0.type", "NOFILE",
         "process.rlimits[0].type: 'NOFILE' does not match '^RLIMIT_[A-Z]+$'"),
        ("process.rlimits.0.soft", DELETE, "process.rlimits[0]: missing required property 'soft'"),
        ("linux.namespaces.0.type", "foo",
         "linux.namespaces[0].type: 'foo' is not one of ['mount', 'pid', 'network', 'uts', "
         "'ipc', 'user', 'cgroup', 'time']"),
        ("linux.namespaces.0", "pid", "linux.namespaces[0]: expected object, got string"),
        ("linux.sysctl", {"net.ipv4.ip_forward": 1},
         'linux.sysctl["net.ipv4.ip_forward"]: expected string, got integer'),
        ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW",
                           "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]},
         "linux.seccomp.syscalls[0].names: expected at least 1 items, got 0"),
        ("linux.resources.blockIO", {"weightDevice": [{"major": 8, "weight": 10}]},
         "linux.resources.blockIO.weightDevice[0]: missing required property 'minor'"),
        ("mounts.1", {"type": "tmpfs"}, "mounts[1]: missing required property 'destination'"),
        ("hooks.prestart", [{"path": "/bin/true", "timeout": 0}],
         "hooks.prestart[0].timeout: 0 is less than the minimum of 1"),
        ("root.readonly", "yes", "root.readonly: expected boolean, got string"),
        ("annotations", {"a": None}, "annotations.a: expected string, got null"),
    ],
)
def test_invalid_config_message(path, value, message):
    with pytest.raises(InvalidArgument) as e:
        validate_runtime_config(config_with(path, value))
    assert str(e.value) == f"config.json: {message}"


def test_root_must_be_an_object():
    with pytest.raises(InvalidArgument, match=r"^config\.json: expected object, got array$"):
        validate_runtime_config([])


def test_message_counts_further_errors_and_stays_one_line():
    config = config_with("process.args", "sh")
    config["hostname"] = 5
    with pytest.raises(InvalidArgument) as e:
        validate_runtime_config(config)
    assert str(e.value).endswith("(and 1 more)")
    assert "\n" not in str(e.value)


def test_errors_lists_every_violation():
    config = config_with("process.args", "sh")
    config["hostname"] = 5
    errors = Validator(RUNTIME_SCHEMA_DIR, "config-schema.json").errors(config)
    assert sorted(errors) == ["hostname: expected string, got integer",
                              "process.args: expected array, got string"]


def test_sections_for_unshipped_platforms_are_not_checked():
    # config-windows.json is referenced by the runtime schema but not shipped (runc ignores it).
    validate_runtime_config({"ociVersion": "1.2.0", "windows": {"layerFolders": 1}})


def test_format_path():
    assert format_path(None) == ""
    assert format_path((((None, "linux"), "namespaces"), 0)) == "linux.namespaces[0]"
    assert format_path(((None, "annotations"), "org.x y")) == 'annotations["org.x y"]'


def all_refs(directory):
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name)) as f:
            text = f.read()
        for ref in re.findall(r'"\$ref":\s*"([^"]*)"', text):
            yield name, ref


@pytest.mark.parametrize("directory", [RUNTIME_SCHEMA_DIR, IMAGE_SCHEMA_DIR])
def test_every_shipped_ref_resolves(directory):
    unshipped = {f"config-{p}.json" for p in ("solaris", "windows", "vm", "zos", "freebsd")}
    for name, ref in all_refs(directory):
        target = ref.partition("#")[0] or name
        if directory == RUNTIME_SCHEMA_DIR and target in unshipped:
            continue
        assert os.path.exists(os.path.join(directory, target)), (name, ref)
        Validator(directory, name)._resolve(ref, name)


# --- image schemas: oneOf, null, format, patternProperties ---

def image(entry):
    return Validator(IMAGE_SCHEMA_DIR, entry)


IMAGE_CONFIG = {"architecture": "amd64", "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []}}


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"Cmd": None}, []),
        ({"Cmd": ["sh"]}, []),
        ({"Cmd": "sh"}, ["config.Cmd: expected array or null, got string"]),
        ({"Cmd": ["sh", 1]}, ["config.Cmd[1]: expected string, got integer"]),
        ({"Labels": {"a": 1}}, ["config.Labels.a: expected string, got integer"]),
        ({"ExposedPorts": {"80/tcp": []}}, ['config.ExposedPorts["80/tcp"]: expected object, '
                                            "got array"]),
    ],
)
def test_image_config_one_of(config, expected):
    assert image("config-schema.json").errors({**IMAGE_CONFIG, "config": config}) == expected


def test_image_manifest_errors():
    manifest = {
        "schemaVersion": 3,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                   "digest": "sha256:" + "0" * 64, "urls": ["not a uri"]},
        "layers": [],
    }
    assert image("image-manifest-schema.json").errors(manifest) == [
        "schemaVersion: 3 is greater than the maximum of 2",
        "config.urls[0]: 'not a uri' is not a URI",
        "layers: expected at least 1 items, got 0",
    ]


def test_one_of_rejects_matching_two_branches(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(
        {"oneOf": [{"type": "integer"}, {"minimum": 0}]}))
    v = Validator(str(tmp_path), "s.json")
    assert v.errors(-1) == []
    assert v.errors(1) == ["matches 2 of the oneOf alternatives, expected exactly 1"]


def test_additional_properties_and_enum_equality(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({
        "properties": {"a": {"enum": [1, [True]]}},
        "patternProperties": {"^x-": {}},
        "additionalProperties": False,
    }))
    v = Validator(str(tmp_path), "s.json")
    assert v.errors({"a": 1, "x-y": 0}) == []
    assert v.errors({"a": [1]}) == ["a: [1] is not one of [1, [True]]"]
    assert v.errors({"a": True}) == ["a: True is not one of [1, [True]]"]
    assert v.errors({"b": 0}) == ["unexpected property 'b'"]


# --- fuzz: whatever JSON arrives, the only failure is InvalidArgument ---

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)

SECTIONS = ["process", "process.user", "process.capabilities", "process.rlimits", "root",
            "mounts", "hooks", "linux", "linux.namespaces", "linux.resources",
            "linux.seccomp", "linux.devices", "annotations"]


def check_runtime(config):
    try:
        validate_runtime_config(config)
    except InvalidArgument as e:
        assert "\n" not in str(e)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_fuzz_whole_document(value):
    check_runtime(value)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SECTIONS), json_values)
def test_fuzz_sections(section, value):
    check_runtime(config_with(section, value))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["config-schema.json", "image-manifest-schema.json",
                        "image-index-schema.json", "image-layout-schema.json"]),
       json_values)
def test_fuzz_image_schemas(entry, value):
    assert all(isinstance(e, str) for e in image(entry).errors(value))


def test_validation_does_not_modify_the_config():
    config = default_spec()
    before = copy.deepcopy(config)
    validate_runtime_config(config)
    assert config == before
