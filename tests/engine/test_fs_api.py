"""A container's filesystem through a real dockyardd (engine/fs.py, engine/api/fs.py): `docker
diff`, `docker export`, `docker cp` both ways (files, directories, symlinks) for running and
stopped containers, the archive stat header — and the hostile cases of security.md §2: paths
and symlinks inside the container that point at host paths (`../`, absolute and relative
links, link swaps racing the copy: CVE-2018-15664 and its 2026 recurrence), archive entries
climbing out (layer tar traversal class), and the daemon never running container-controlled
programs while copying (CVE-2019-14271 / GHSA-x86f-5xw2-fm2r)."""

from __future__ import annotations

import base64
import bz2
import gzip
import http.client
import io
import json
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.parse
import uuid

import pytest

pytestmark = pytest.mark.usefixtures("subreaper")

GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27


def _name() -> str:
    return "fs-" + uuid.uuid4().hex[:8]


@pytest.fixture
def host_dir():
    """A host directory a hostile container aims at; it must stay as it is."""
    d = tempfile.mkdtemp(prefix="dye-victim-", dir="/tmp")
    with open(os.path.join(d, "secret"), "w") as f:
        f.write("HOST-SECRET\n")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _untouched(d: str) -> None:
    assert sorted(os.listdir(d)) == ["secret"], f"something was written to the host: {os.listdir(d)}"
    with open(os.path.join(d, "secret")) as f:
        assert f.read() == "HOST-SECRET\n"


@pytest.fixture(params=["running", "stopped"])
def container(request, engine):
    """A container whose filesystem a script prepared, running or stopped; (name, make) where
    make(script) creates it."""
    names = []

    def make(script: str = "true") -> str:
        name = _name()
        names.append(name)
        if request.param == "running":
            engine.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                          f"{script} && touch /.ready && exec sleep 1000", check=True)
            for _ in range(200):
                if engine.http("HEAD", f"/containers/{name}/archive?path=/.ready")[0] == 200:
                    break
            else:
                raise AssertionError("the container did not get ready")
        else:
            engine.docker("run", "-d", "--name", name, "busybox", "sh", "-c", script, check=True)
            assert engine.docker("wait", name, check=True).stdout.strip() == "0"
        return name

    make.state = request.param
    yield make
    for name in names:
        engine.docker("rm", "-f", name)


def _q(path: str) -> str:
    return urllib.parse.quote(path, safe="")


def _stat(engine, name: str, path: str) -> tuple[int, dict | None]:
    status, headers, _ = engine.http("HEAD", f"/containers/{name}/archive?path={_q(path)}")
    raw = headers.get("x-docker-container-path-stat")
    return status, json.loads(base64.b64decode(raw)) if raw else None


def _get(engine, name: str, path: str) -> tuple[int, bytes]:
    status, _, body = engine.http("GET", f"/containers/{name}/archive?path={_q(path)}")
    return status, body


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name: m for m in t.getmembers()}


def _read(data: bytes, member: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return t.extractfile(member).read()


def _tar(*entries: tuple) -> bytes:
    """entries: (name, "file", data) | (name, "dir") | (name, "symlink", target) | (name, "link", target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, *rest in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(rest[0])
                t.addfile(info, io.BytesIO(rest[0]))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "link": tarfile.LNKTYPE}[kind]
            if kind == "dir":
                info.mode = 0o755
            else:
                info.linkname = rest[0]
            t.addfile(info)
    return buf.getvalue()


def _put(engine, name: str, path: str, data: bytes, query: str = "") -> tuple[int, bytes]:
    status, _, body = engine.http("PUT", f"/containers/{name}/archive?path={_q(path)}{query}", body=data,
                                  headers={"Content-Type": "application/x-tar"})
    return status, body


# -- diff, export ---------------------------------------------------------------------------------------

def test_diff_reports_added_changed_deleted(engine, container):
    name = container("mkdir -p /d/e && echo hi > /newfile && rm /bin/ls && echo x >> /etc/profile.e7 && rm -rf /home")
    changes = engine.json("GET", f"/containers/{name}/changes", expect=200)
    got = {c["Path"]: c["Kind"] for c in changes}
    assert got["/d"] == 1 and got["/d/e"] == 1 and got["/newfile"] == 1
    assert got["/bin"] == 0 and got["/bin/ls"] == 2 and got["/home"] == 2
    lines = engine.docker("diff", name, check=True).stdout.splitlines()
    assert "A /newfile" in lines and "D /bin/ls" in lines and "C /bin" in lines
    assert lines.index("C /bin") < lines.index("D /bin/ls")


def test_export_is_the_containers_filesystem(engine, container, tmp_path):
    name = container("echo exported > /newfile && rm /bin/ls")
    out = tmp_path / "export.tar"
    engine.docker("export", "-o", str(out), name, check=True)
    with tarfile.open(out) as t:
        names = set(t.getnames())
        assert t.extractfile("newfile").read() == b"exported\n"
    assert "bin/busybox" in names and "bin/ls" not in names
    assert engine.http("GET", "/containers/nosuch-e7/export")[0] == 404


# -- docker cp ----------------------------------------------------------------------------------------

def test_cp_file_and_dir_into_and_out_of_the_container(engine, container, tmp_path):
    name = container("mkdir -p /data/sub && echo inner > /data/sub/f && ln -s sub/f /data/rel")
    src = tmp_path / "in.txt"
    src.write_text("from the host\n")
    engine.docker("cp", str(src), f"{name}:/tmp/", check=True)
    engine.docker("cp", str(src), f"{name}:/renamed.txt", check=True)
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "c.txt").write_text("deep\n")
    os.symlink("b/c.txt", tree / "a" / "link")
    engine.docker("cp", str(tree), f"{name}:/copied", check=True)

    out = tmp_path / "out"
    out.mkdir()
    engine.docker("cp", f"{name}:/tmp/in.txt", str(out / "back.txt"), check=True)
    assert (out / "back.txt").read_text() == "from the host\n"
    assert _read(_get(engine, name, "/renamed.txt")[1], "renamed.txt") == b"from the host\n"
    engine.docker("cp", f"{name}:/copied", str(out / "copied"), check=True)
    assert (out / "copied" / "a" / "b" / "c.txt").read_text() == "deep\n"
    assert os.readlink(out / "copied" / "a" / "link") == "b/c.txt"
    engine.docker("cp", f"{name}:/data", str(out), check=True)
    assert (out / "data" / "sub" / "f").read_text() == "inner\n"
    assert os.readlink(out / "data" / "rel") == "sub/f"
    # a symlink is copied as the link; -L copies what it points to
    engine.docker("cp", f"{name}:/data/rel", str(out / "link"), check=True)
    assert os.readlink(out / "link") == "sub/f"
    engine.docker("cp", "-L", f"{name}:/data/rel", str(out / "followed"), check=True)
    assert (out / "followed").read_text() == "inner\n"
    # to stdout: a tar
    r = subprocess.run(["/usr/local/bin/docker", "cp", f"{name}:/data/sub/f", "-"], env=engine.env,
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and _read(r.stdout, "f") == b"inner\n"


def test_cp_from_stdin_tar(engine, container):
    name = container("mkdir /dest")
    data = _tar(("x", "dir"), ("x/y.txt", "file", b"tarred\n"))
    r = subprocess.run(["/usr/local/bin/docker", "cp", "-", f"{name}:/dest"], input=data, env=engine.env,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert _read(_get(engine, name, "/dest/x/y.txt")[1], "y.txt") == b"tarred\n"


def test_archive_stat_header(engine, container):
    name = container("mkdir -p /s/dir && printf 12345 > /s/file && ln -s /s/dir /s/abs && ln -s ../s/file /s/rel"
                     " && chmod 4755 /s/file")
    status, st = _stat(engine, name, "/s/dir")
    assert status == 200 and st["name"] == "dir" and st["mode"] & GO_MODE_DIR and st["linkTarget"] == ""
    status, st = _stat(engine, name, "/s/file")
    assert st["size"] == 5 and st["mode"] == (1 << 23) | 0o755 and st["mtime"].endswith("Z")
    status, st = _stat(engine, name, "/s/abs")
    assert st["mode"] & GO_MODE_SYMLINK and st["linkTarget"] == "/s/dir"
    status, st = _stat(engine, name, "/s/rel")
    assert st["linkTarget"] == "/s/file"
    status, st = _stat(engine, name, "/s/abs/")   # a trailing slash follows the link
    assert st["mode"] & GO_MODE_DIR and st["name"] == "abs"
    assert _stat(engine, name, "/nonexistent")[0] == 404
    status, body = _get(engine, name, "/nonexistent")
    assert status == 404 and b"Could not find the file /nonexistent" in body
    assert engine.http("HEAD", f"/containers/{name}/archive")[0] == 400
    status, _, _ = engine.http("HEAD", "/containers/nosuch-e7/archive?path=/")
    assert status == 404


def test_put_errors(engine, container):
    name = container("echo f > /file")
    assert _put(engine, name, "/missing", _tar(("a", "file", b"a")))[0] == 404
    status, body = _put(engine, name, "/file", _tar(("a", "file", b"a")))
    assert status == 400 and b"not a directory" in body
    assert _put(engine, name, "/", b"this is not a tar" * 100)[0] == 400
    status, body = _put(engine, name, "/", _tar(("file", "dir")), "&noOverwriteDirNonDir=1")
    assert status == 400 and b"cannot overwrite non-directory" in body
    status, body = _put(engine, name, "/", _tar(("bin", "file", b"x")), "&noOverwriteDirNonDir=1")
    assert status == 400 and b"cannot overwrite directory" in body
    assert _stat(engine, name, "/bin")[1]["mode"] & GO_MODE_DIR


# -- hostile paths: CVE-2018-15664 class -----------------------------------------------------------------

def test_cve_2018_15664_symlinks_to_host_paths_resolve_in_the_container(engine, container, host_dir):
    """Links inside the container naming a host directory (absolute, relative with ../ enough
    to climb out of any root): reads and writes through them stay in the container's root."""
    secret = os.path.join(host_dir, "secret")
    name = container(f"ln -s {host_dir} /abs && ln -s ../../../../../../../../..{host_dir} /rel"
                     f" && ln -s {secret} /leak && mkdir -p {host_dir}-inside")
    for path in ("/abs/secret", "/rel/secret", "/leak", "/leak/", "/abs/", "/../../../../..{}".format(secret),
                 f"/abs/../../../../{secret}"):
        status, body = _get(engine, name, path)
        assert b"HOST-SECRET" not in body, path
        assert status in (200, 400, 404), path
    status, st = _stat(engine, name, "/leak")
    assert st["linkTarget"] == secret   # reported, as a path in the container
    r = engine.docker("cp", "-L", f"{name}:/leak", "-")
    assert r.returncode != 0 and "HOST-SECRET" not in r.stdout
    # writes: through the links, to the container's own /tmp/dye-victim-…
    for path in ("/abs", "/rel", "/abs/", f"/../../..{host_dir}"):
        status, _ = _put(engine, name, path, _tar(("pwned", "file", b"x")))
        assert status in (200, 404), path
    _untouched(host_dir)


def test_cve_2018_15664_archive_entries_do_not_climb_out(engine, container, host_dir):
    name = container(f"mkdir -p /dest {host_dir}")
    depth = "../" * 12
    for hostile in (
        _tar((f"{depth}{host_dir.lstrip('/')}/pwned", "file", b"x")),
        _tar(("../escape", "file", b"x")),
        _tar(("ok", "file", b"ok"), ("hard", "link", f"{depth}{host_dir.lstrip('/')}/secret")),
    ):
        status, body = _put(engine, name, "/dest", hostile)
        assert status == 400, body
    # a symlink entry at a host path, then a file through it: lands inside the container
    status, body = _put(engine, name, "/dest", _tar(("lnk", "symlink", host_dir), ("lnk/pwned", "file", b"inside\n")))
    assert status == 200, body
    assert _read(_get(engine, name, f"{host_dir}/pwned")[1], "pwned") == b"inside\n"
    # an absolute entry name is relative to the extraction directory
    status, body = _put(engine, name, "/dest", _tar((f"{host_dir}/abs", "file", b"abs\n")))
    assert status == 200
    assert _read(_get(engine, name, f"/dest{host_dir}/abs")[1], "abs") == b"abs\n"
    _untouched(host_dir)


@pytest.mark.slow
def test_cve_2018_15664_symlink_swap_race_never_reaches_the_host(engine, host_dir):
    """A container process swaps a directory and a symlink to a host path as fast as it can
    while copies go on in both directions (moby#39292's exploit shape)."""
    name = _name()
    engine.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                  f"mkdir -p {host_dir} /w && while :; do rm -rf /w/d; mkdir /w/d; echo c > /w/d/secret;"
                  f" rm -rf /w/d; ln -s {host_dir} /w/d; done", check=True)
    try:
        for i in range(40):
            status, _ = _put(engine, name, "/w/d", _tar((f"race{i}", "file", b"x")))
            assert status in (200, 400, 404)
            for path in ("/w/d/secret", "/w/d/"):
                try:
                    status, body = _get(engine, name, path)
                except http.client.IncompleteRead as e:   # changed under the walk: cut short
                    body = e.partial
                assert b"HOST-SECRET" not in body
        _untouched(host_dir)
    finally:
        engine.docker("rm", "-f", name)


# -- container-controlled programs: CVE-2019-14271 / GHSA-x86f-5xw2-fm2r class --------------------------------

def test_cve_2019_14271_no_container_binary_runs_on_the_daemon(engine, container, tmp_path):
    """The container plants xz/gzip/unpigz/bzip2 and a libnss module; compressed uploads and
    copies with an owner lookup (copyUIDGID) must not run any of them."""
    marker = f"/tmp/dye-pwned-{uuid.uuid4().hex[:8]}"
    evil = f"#!/bin/sh\\ntouch {marker}\\nexit 1\\n"
    plant = " && ".join(f"rm -f {p} && printf '{evil}' > {p} && chmod 755 {p}"
                        for p in ("/bin/xz", "/bin/unpigz", "/bin/gzip", "/bin/bzip2", "/usr/bin/xz"))
    name = container(f"mkdir -p /usr/bin /lib/x86_64-linux-gnu /dest && {plant}"
                     f" && printf 'garbage' > /lib/x86_64-linux-gnu/libnss_files.so.2"
                     f" && printf 'passwd: files\\ngroup: files\\n' > /etc/nsswitch.conf")
    plain = _tar(("xz.txt", "file", b"from xz\n"))
    status, body = _put(engine, name, "/dest", lzma.compress(plain, format=lzma.FORMAT_XZ))
    assert status == 200, body
    assert _put(engine, name, "/dest", gzip.compress(_tar(("gz.txt", "file", b"gz\n"))))[0] == 200
    assert _put(engine, name, "/dest", bz2.compress(_tar(("bz.txt", "file", b"bz\n"))))[0] == 200
    assert _put(engine, name, "/dest", _tar(("owned", "file", b"o")), "&copyUIDGID=1")[0] == 200
    assert _read(_get(engine, name, "/dest/xz.txt")[1], "xz.txt") == b"from xz\n"
    assert _read(_get(engine, name, "/dest/gz.txt")[1], "gz.txt") == b"gz\n"
    assert _read(_get(engine, name, "/dest/bz.txt")[1], "bz.txt") == b"bz\n"
    engine.docker("cp", f"{name}:/dest", str(tmp_path / "out"), check=True)
    assert not os.path.exists(marker), "a program from the container ran on the host"


def test_copy_uid_gid_uses_the_containers_user(engine):
    name = _name()
    engine.docker("create", "--name", name, "--user", "nobody", "busybox", "true", check=True)
    try:
        data = _tar(("dest-owned", "file", b"x"))
        assert _put(engine, name, "/tmp", data, "&copyUIDGID=1")[0] == 200
        member = _members(_get(engine, name, "/tmp/dest-owned")[1])["dest-owned"]
        assert (member.uid, member.gid) == (65534, 65534)
        assert _put(engine, name, "/tmp", _tar(("kept", "file", b"x")))[0] == 200
        member = _members(_get(engine, name, "/tmp/kept")[1])["kept"]
        assert (member.uid, member.gid) == (0, 0)
    finally:
        engine.docker("rm", "-f", name)
