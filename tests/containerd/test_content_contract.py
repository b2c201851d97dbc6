"""Contract of the ContentStore Protocol, after containerd's core/content/testsuite
(Writer, Resume*, CommitExists, Labels, CrossNamespace*) plus our input-validation rules."""

import hashlib
import os
import signal
import stat

import pytest

from dockyard.errors import Conflict, InvalidArgument, NotFound

BODY = os.urandom(300_000)
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()


def put(content, ns, data, ref="ref", labels=None):
    w = content.writer(ns, ref, total=len(data))
    w.write(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    w.commit(len(data), digest, labels)
    return digest


def read_all(content, ns, digest):
    r = content.reader_at(ns, digest)
    try:
        return r.read_at(0, r.size)
    finally:
        r.close()


def test_write_commit_read(content):
    w = content.writer("moby", "layer-1", total=len(BODY), expected=DIGEST)
    for i in range(0, len(BODY), 65536):
        w.write(BODY[i:i + 65536])
    assert w.status().offset == len(BODY) and w.status().total == len(BODY)
    assert w.digest() == DIGEST
    w.commit(len(BODY), DIGEST, {"containerd.io/uncompressed": DIGEST})
    info = content.info("moby", DIGEST)
    assert (info.digest, info.size, info.labels) == (DIGEST, len(BODY), {"containerd.io/uncompressed": DIGEST})
    assert read_all(content, "moby", DIGEST) == BODY
    r = content.reader_at("moby", DIGEST)
    assert r.read_at(10, 5) == BODY[10:15] and r.read_at(len(BODY), 10) == b""
    r.close()
    assert content.list_statuses("moby") == []
    with pytest.raises(NotFound):
        content.status("moby", "layer-1")


def test_local_layout(content):
    if not hasattr(content, "blob_path"):
        pytest.skip("layout of the local store only")
    put(content, "moby", BODY)
    path = os.path.join(content.root, "blobs", "sha256", DIGEST[7:])
    assert content.blob_path(DIGEST) == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
    assert os.listdir(os.path.join(content.root, "ingest")) == []
    w = content.writer("moby", "pending")
    w.write(b"abc")
    (ingest,) = os.listdir(os.path.join(content.root, "ingest"))
    assert ingest == hashlib.sha256(b"moby/pending").hexdigest()
    assert sorted(os.listdir(os.path.join(content.root, "ingest", ingest))) == \
        ["data", "ref", "startedat", "total", "updatedat"]
    w.close()


def test_wrong_digest_keeps_ingest_for_retry(content):
    w = content.writer("moby", "r")
    w.write(BODY[:1000])
    with pytest.raises(InvalidArgument, match="unexpected commit digest"):
        w.commit(1000, DIGEST)
    with pytest.raises(InvalidArgument, match="unexpected commit size"):
        w.commit(999)
    assert content.status("moby", "r").offset == 1000
    w.truncate(0)
    w.write(BODY)
    w.commit(len(BODY), DIGEST)
    assert content.info("moby", DIGEST).size == len(BODY)


def test_wrong_digest_then_abort(content):
    w = content.writer("moby", "r")
    w.write(b"junk")
    with pytest.raises(InvalidArgument):
        w.commit(0, DIGEST)
    w.close()
    content.abort("moby", "r")
    assert content.list_statuses("moby") == []
    with pytest.raises(NotFound):
        content.abort("moby", "r")
    with pytest.raises(NotFound):
        content.info("moby", DIGEST)


def test_resume_after_close(content):
    w = content.writer("moby", "r", total=len(BODY))
    w.write(BODY[:100_000])
    w.close()
    st = content.status("moby", "r")
    assert (st.ref, st.offset, st.total) == ("r", 100_000, len(BODY))
    w = content.writer("moby", "r", total=len(BODY), expected=DIGEST)
    assert w.status().offset == 100_000
    w.write(BODY[100_000:])
    w.commit(len(BODY), DIGEST)
    assert read_all(content, "moby", DIGEST) == BODY


def test_resume_after_writer_killed(content):
    pid = os.fork()
    if pid == 0:
        try:
            w = content.writer("moby", "r")
            w.write(BODY[:123_456])
        finally:
            os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    w = content.writer("moby", "r")  # the dead writer's lock is gone
    assert w.status().offset == 123_456
    w.write(BODY[123_456:])
    w.commit(len(BODY), DIGEST)


def test_one_writer_per_ref(content):
    w = content.writer("moby", "r")
    with pytest.raises(Conflict, match="locked"):
        content.writer("moby", "r")
    content.writer("k8s.io", "r").close()  # refs are per namespace
    w.close()
    content.writer("moby", "r").close()


def test_total_mismatch(content):
    content.writer("moby", "r", total=10).close()
    with pytest.raises(InvalidArgument):
        content.writer("moby", "r", total=11)


def test_commit_exists(content):
    put(content, "moby", BODY)
    with pytest.raises(Conflict):
        content.writer("moby", "again", expected=DIGEST)
    w = content.writer("moby", "again")
    w.write(BODY)
    with pytest.raises(Conflict, match="already exists"):
        w.commit(len(BODY), DIGEST)
    assert content.list_statuses("moby") == []


def test_cross_namespace_isolation(content):
    put(content, "moby", BODY)
    with pytest.raises(NotFound):
        content.info("k8s.io", DIGEST)
    with pytest.raises(NotFound):
        content.reader_at("k8s.io", DIGEST)
    # The other namespace must bring the bytes itself; then it shares the blob.
    w = content.writer("k8s.io", "r", expected=DIGEST)
    w.write(b"not the content")
    with pytest.raises(InvalidArgument):
        w.commit(0, DIGEST)
    w.truncate(0)
    w.write(BODY)
    w.commit(len(BODY), DIGEST)
    content.delete("moby", DIGEST)
    assert read_all(content, "k8s.io", DIGEST) == BODY
    content.delete("k8s.io", DIGEST)
    with pytest.raises(NotFound):
        content.delete("k8s.io", DIGEST)
    if hasattr(content, "blob_path"):
        assert not os.path.exists(content.blob_path(DIGEST))


def test_labels_and_list_filters(content):
    a = put(content, "moby", b"a", "ra", {"kind": "config"})
    b = put(content, "moby", b"bb", "rb", {"kind": "layer"})
    assert [i.digest for i in content.list("moby")] == sorted([a, b])
    assert [i.digest for i in content.list("moby", "labels.kind==layer")] == [b]
    assert [i.digest for i in content.list("moby", f"digest=={a}")] == [a]
    assert content.list("k8s.io") == []
    info = content.update("moby", a, {"x": "1"}, ["labels.x"])
    assert info.labels == {"kind": "config", "x": "1"}
    assert content.update("moby", a, {"y": "2"}).labels == {"y": "2"}
    assert content.info("moby", a).labels == {"y": "2"}
    with pytest.raises(InvalidArgument):
        content.update("moby", a, {}, ["size"])
    with pytest.raises(NotFound):
        content.update("moby", "sha256:" + "0" * 64, {})


def test_list_statuses(content):
    for ref in ("layer-a", "layer-b", "config"):
        content.writer("moby", ref).close()
    content.writer("k8s.io", "other").close()
    assert [s.ref for s in content.list_statuses("moby")] == sorted(
        ["layer-a", "layer-b", "config"], key=lambda r: hashlib.sha256(f"moby/{r}".encode()).hexdigest())
    assert sorted(s.ref for s in content.list_statuses("moby", "ref~=^layer-")) == ["layer-a", "layer-b"]
    assert [s.ref for s in content.list_statuses("k8s.io")] == ["other"]


@pytest.mark.parametrize("digest", ["sha256:../../../../etc/passwd", "sha256:" + "A" * 64, "../x",
                                    "sha256:" + "a" * 63])
def test_bad_digests_rejected_before_filesystem(content, digest):
    for call in (lambda: content.info("moby", digest), lambda: content.reader_at("moby", digest),
                 lambda: content.delete("moby", digest), lambda: content.writer("moby", "r", expected=digest)):
        with pytest.raises(InvalidArgument):
            call()
    assert content.list_statuses("moby") == []


def test_refs_never_become_paths(content, tmp_path):
    w = content.writer("moby", "../../../../escape")
    w.write(b"x")
    w.close()
    assert not any("escape" in name for _, dirs, files in os.walk(tmp_path) for name in dirs + files)
    assert [s.ref for s in content.list_statuses("moby")] == ["../../../../escape"]
    with pytest.raises(InvalidArgument):
        content.writer("moby", "line\nbreak")
    with pytest.raises(InvalidArgument):
        content.writer("../moby", "r")
