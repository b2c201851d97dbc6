"""Names from clients are validated before they reach SQL or the filesystem."""

import pytest

from dockyard.containerd.identifiers import (apply_label_update, validate_digest, validate_identifier,
                                             validate_labels, validate_namespace, validate_ref)
from dockyard.errors import InvalidArgument

HEX = "a" * 64


@pytest.mark.parametrize("name", ["default", "moby", "k8s.io", "a", "a-b_c.d", "A1", "x" * 76])
def test_valid_namespaces(name):
    assert validate_namespace(name) == name


@pytest.mark.parametrize("name", ["", "version", "-a", "a-", "a..b", "a/b", "../x", "a b", "x" * 77, "é", "a\n"])
def test_invalid_namespaces(name):
    with pytest.raises(InvalidArgument):
        validate_namespace(name)


def test_identifier_rejects_traversal():
    for bad in ("..", ".", "a/../b", "/etc"):
        with pytest.raises(InvalidArgument):
            validate_identifier(bad)


@pytest.mark.parametrize("digest", [
    "", "sha256:", f"sha256:{HEX[:63]}", f"sha256:{HEX}0", f"sha256:{HEX.upper()}", f"sha512:{HEX}{HEX}",
    f"sha256:../../{HEX[6:]}", f"sha256:{HEX}\n", f"sha256:{HEX}/..", f" sha256:{HEX}", f"sha256/{HEX}",
])
def test_invalid_digests(digest):
    with pytest.raises(InvalidArgument):
        validate_digest(digest)


def test_valid_digest():
    assert validate_digest(f"sha256:{HEX}")


@pytest.mark.parametrize("ref", ["", "a\nb", "x" * 2000, "nul\x00"])
def test_invalid_refs(ref):
    with pytest.raises(InvalidArgument):
        validate_ref(ref)


def test_labels_bounded():
    validate_labels({"k": "v" * 4095})
    with pytest.raises(InvalidArgument):
        validate_labels({"k": "v" * 4096})
    with pytest.raises(InvalidArgument):
        validate_labels({"": "v"})


def test_label_update_fieldpaths():
    current = {"a": "1", "b": "2"}
    assert apply_label_update(current, {"c": "3"}, None) == {"c": "3"}
    assert apply_label_update(current, {"c": "3"}, ["labels"]) == {"c": "3"}
    assert apply_label_update(current, {"c": "3"}, ["labels.c"]) == {"a": "1", "b": "2", "c": "3"}
    assert apply_label_update(current, {}, ["labels.a"]) == {"b": "2"}
    with pytest.raises(InvalidArgument):
        apply_label_update(current, {}, ["size"])
