"""Contract of the Images Protocol (containerd images store)."""

import pytest

from dockyard.containerd.metadata import Descriptor, Image
from dockyard.errors import Conflict, InvalidArgument, NotFound

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def img(name="docker.io/library/busybox:latest", digest=D1, **kw):
    return Image(name, Descriptor(MANIFEST, digest, 1234, {"org.opencontainers.image.ref.name": "latest"}), **kw)


def test_create_get_list(images):
    created = images.create("moby", img(labels={"x": "1"}))
    assert images.get("moby", created.name) == created
    images.create("moby", img("docker.io/library/alpine:3", D2))
    assert [i.name for i in images.list("moby")] == ["docker.io/library/alpine:3", "docker.io/library/busybox:latest"]
    assert [i.name for i in images.list("moby", f"target.digest=={D2}")] == ["docker.io/library/alpine:3"]
    assert [i.name for i in images.list("moby", "name~=busybox")] == ["docker.io/library/busybox:latest"]
    assert images.list("k8s.io") == []


def test_conflict_and_not_found(images):
    images.create("moby", img())
    with pytest.raises(Conflict):
        images.create("moby", img())
    with pytest.raises(NotFound):
        images.get("moby", "nope")
    with pytest.raises(NotFound):
        images.delete("moby", "nope")


@pytest.mark.parametrize("bad", [
    img(name=""), img(digest="sha256:abc"), img(digest="md5:" + "0" * 32),
    Image("x", Descriptor("", D1, 1)), Image("x", Descriptor(MANIFEST, D1, -1)), img(name="a\nb"),
])
def test_invalid_images(images, bad):
    with pytest.raises(InvalidArgument):
        images.create("moby", bad)


def test_update(images):
    created = images.create("moby", img(labels={"a": "1"}))
    u = images.update("moby", img(digest=D2, labels={"b": "2"}), ["target"])
    assert u.target.digest == D2 and u.labels == {"a": "1"} and u.created_at == created.created_at
    u = images.update("moby", img(digest=D1, labels={"b": "2"}))
    assert u.target.digest == D1 and u.labels == {"b": "2"}
    with pytest.raises(InvalidArgument):
        images.update("moby", img(), ["name"])


def test_delete(images):
    images.create("moby", img())
    images.delete("moby", img().name)
    assert images.list("moby") == []
