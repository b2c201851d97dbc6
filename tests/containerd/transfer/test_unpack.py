"""unpack: layers from the content store into overlay snapshots named by chain ID."""

import os
import threading

import pytest

from dockyard.containerd import gc
from dockyard.containerd.snapshots import mount_all, unmount_all
from dockyard.containerd.transfer import progress as p
from dockyard.containerd.transfer.unpack import unpack
from dockyard.errors import InvalidArgument, Unsupported
from dockyard.oci.image import chain_ids, parse_config, parse_manifest
from tests.containerd.transfer.conftest import NS, Built, assert_nothing_left, build_image, canonical, sha256

BASE = [("etc", "dir", b""), ("etc/os-release", "file", b"ID=test\n"),
        ("etc/gone", "file", b"removed by layer 2\n"),
        ("opt", "dir", b""), ("opt/old", "file", b"hidden by the opaque dir\n"),
        ("bin", "dir", b""), ("bin/tool", "file", b"#!/bin/sh\n", 0o4755),
        ("bin/alias", "symlink", "tool"), ("bin/hard", "link", "bin/tool", 0o4755)]
TOP = [("etc/gone", "whiteout", b""), ("opt", "dir", b""), ("opt", "opaque", b""),
       ("opt/new", "file", b"new\n"), ("etc/added", "file", b"added\n")]


def store(stores, built: Built) -> tuple:
    """Put the image's blobs and manifest into content; (manifest, config) parsed."""
    for data in list(built.blobs.values()) + [built.manifest]:
        if stores.content.list(NS, f"digest=={sha256(data)}"):
            continue
        with stores.content.writer(NS, f"test-{sha256(data)}", total=len(data)) as w:
            w.write(data)
            w.commit(len(data), sha256(data))
    return parse_manifest(built.manifest), parse_config(built.config)


def test_layers_become_a_chain_of_snapshots(stores, mnt, events):
    built = build_image([BASE, TOP], compression=["gzip", "zstd"])
    manifest, config = store(stores, built)
    top = unpack(stores, NS, manifest, config, events)
    chains = chain_ids(built.diff_ids)
    assert top == chains[-1]
    assert [s.name for s in stores.snapshotter.list(NS)] == chains
    assert stores.snapshotter.stat(NS, chains[1]).parent == chains[0]
    # The config keeps the chain alive; nothing else was left (no lease, no extract snapshot).
    assert stores.content.info(NS, manifest.config.digest).labels[
        "containerd.io/gc.ref.snapshot.overlayfs"] == top
    assert stores.leases.list(NS) == []
    short = [d[7:19] for d in built.layer_digests]
    assert events.statuses(short[0])[-1] == p.PULL_COMPLETE
    assert p.EXTRACTING in events.statuses(short[1])

    stores.snapshotter.view(NS, "look", top)
    mount_all(stores.snapshotter.mounts(NS, "look"), mnt)
    try:
        assert open(os.path.join(mnt, "etc/os-release")).read() == "ID=test\n"
        assert open(os.path.join(mnt, "etc/added")).read() == "added\n"
        assert not os.path.lexists(os.path.join(mnt, "etc/gone"))  # whiteout
        assert os.listdir(os.path.join(mnt, "opt")) == ["new"]  # opaque directory
        assert os.readlink(os.path.join(mnt, "bin/alias")) == "tool"
        st = os.stat(os.path.join(mnt, "bin/tool"))
        assert st.st_mode & 0o7777 == 0o4755 and st.st_nlink == 2
        assert os.stat(os.path.join(mnt, "bin/hard")).st_ino == st.st_ino
    finally:
        unmount_all(mnt)
    stores.snapshotter.remove(NS, "look")


def test_existing_snapshots_are_not_unpacked_again(stores, events):
    built = build_image([BASE, TOP])
    manifest, config = store(stores, built)
    unpack(stores, NS, manifest, config)
    ids = [(s.name, s.created_at) for s in stores.snapshotter.list(NS)]
    unpack(stores, NS, manifest, config, events)
    assert [(s.name, s.created_at) for s in stores.snapshotter.list(NS)] == ids
    assert set(events.statuses()) == {p.ALREADY_EXISTS}


def test_shared_base_layer_is_reused(stores):
    one = build_image([BASE, TOP])
    two = build_image([BASE, [("etc/other", "file", b"2\n")]])
    unpack(stores, NS, *store(stores, one))
    unpack(stores, NS, *store(stores, two))
    assert len(stores.snapshotter.list(NS)) == 3  # the base once, two tops


def test_concurrent_unpacks_of_one_image_agree(stores):
    built = build_image([BASE, TOP])
    manifest, config = store(stores, built)
    results, errors = [], []

    def run():
        try:
            results.append(unpack(stores, NS, manifest, config))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [chain_ids(built.diff_ids)[-1]] * 3
    assert sorted(s.name for s in stores.snapshotter.list(NS)) == sorted(chain_ids(built.diff_ids))


def test_diff_id_mismatch_is_refused_and_leaves_nothing(stores):
    wrong = sha256(b"not this layer")
    built = build_image([BASE, TOP], diff_ids=[build_image([BASE]).diff_ids[0], wrong])
    manifest, config = store(stores, built)
    with pytest.raises(InvalidArgument, match="diff id"):
        unpack(stores, NS, manifest, config)
    # The first layer is fine and committed; the second's extract snapshot is gone.
    assert [s.name for s in stores.snapshotter.list(NS)] == [built.diff_ids[0]]
    assert stores.leases.list(NS) == []
    gc.collect(stores.db, stores.content, {"overlayfs": stores.snapshotter})
    assert stores.snapshotter.list(NS) == []


def test_layer_count_must_match_diff_ids(stores):
    built = build_image([BASE, TOP])
    manifest, _ = store(stores, built)
    config = parse_config(canonical({"architecture": "amd64", "os": "linux",
                                     "rootfs": {"type": "layers", "diff_ids": built.diff_ids[:1]}}))
    with pytest.raises(InvalidArgument, match="1 diff ids for 2 layers"):
        unpack(stores, NS, manifest, config)


def test_unknown_layer_media_type_is_unsupported(stores):
    built = build_image([BASE])
    built.manifest = built.manifest.replace(b"application/vnd.oci.image.layer.v1.tar+gzip",
                                            b"application/vnd.example.weird")
    manifest, config = store(stores, built)
    with pytest.raises(Unsupported, match="unsupported media type"):
        unpack(stores, NS, manifest, config)
    assert stores.snapshotter.list(NS) == []
    assert stores.leases.list(NS) == []


def test_corrupt_layer_is_refused(stores):
    built = build_image([BASE])
    blob = bytearray(built.layers[0])
    blob[len(blob) // 2] ^= 0xFF
    built.layers[0] = bytes(blob)
    built.blobs = {sha256(b): b for b in built.layers + [built.config]}
    built.manifest = built.manifest.replace(sha256(build_image([BASE]).layers[0]).encode(),
                                            sha256(built.layers[0]).encode())
    manifest, config = store(stores, built)
    with pytest.raises(InvalidArgument):
        unpack(stores, NS, manifest, config)
    stores.content.delete(NS, sha256(built.manifest))
    for d in built.blobs:
        stores.content.delete(NS, d)
    assert_nothing_left(stores)
