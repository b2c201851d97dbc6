"""`dockyard-ctr images` end to end, through a real dockyard-containerd and a real registry:
pull (Docker's progress lines), ls, tag, rm, push, save → load, import of a rootfs tarball,
and containers run from those images (`run IMAGE ID CMD`)."""

import io
import os
import subprocess
import tarfile


from tests.ctr.test_run import one_line_error
from tests.fixtures import busybox


def test_pull_ls_tag_run_rm(ctr, busybox_ref):
    ref, digest = busybox_ref
    out = ctr.ok("images", "pull", ref).splitlines()
    # Not a terminal: Docker's plain lines, no byte counts, the image's name last.
    assert out[0] == "latest: Pulling from fixture/busybox"
    layer_lines = [line for line in out if ": Pull" in line and not line.startswith("latest")]
    assert any(line.endswith(": Pulling fs layer") for line in layer_lines)
    assert any(line.endswith(": Pull complete") for line in layer_lines)
    assert f"Digest: {digest}" in out
    assert out[-2] == f"Status: Downloaded newer image for {ref}"
    assert out[-1] == ref
    rows = ctr.table("images", "ls")
    assert rows[1][:3] == [ref, "application/vnd.oci.image.manifest.v1+json", digest]

    assert ctr.ok("images", "tag", ref, "local/copy:1") == "docker.io/local/copy:1\n"
    one_line_error(ctr("images", "tag", ref, "local/copy:1"), "already exists")
    assert ctr.ok("images", "tag", "--force", ref, "local/copy:1") == "docker.io/local/copy:1\n"
    assert sorted(ctr.ok("images", "ls", "-q").split()) == sorted([ref, "docker.io/local/copy:1"])

    # A container of the tag: its snapshot is made on the image's layers and goes with --rm.
    cid = ctr.new_id()
    r = ctr("run", "--rm", "local/copy:1", cid, "sh", "-c", "echo from-image; ls /bin/busybox")
    assert (r.returncode, r.stdout, r.stderr) == (0, "from-image\n/bin/busybox\n", "")
    assert cid not in ctr.ok("snapshots", "ls")

    assert ctr.ok("images", "rm", "--sync", "local/copy:1") == "docker.io/local/copy:1\n"
    one_line_error(ctr("images", "rm", "local/copy:1"), "not found")
    assert ctr.ok("images", "ls", "-q") == ref + "\n"


def test_push_a_tag_to_another_repository(ctr, busybox_ref, registry):
    ref, digest = busybox_ref
    ctr.ok("images", "pull", ref)
    target = f"{registry.host}/busybox_ref/busybox:v2"
    ctr.ok("images", "tag", ref, target)
    out = ctr.ok("images", "push", target).splitlines()
    assert out[0] == f"The push refers to repository [{registry.host}/busybox_ref/busybox]"
    assert out[-1].startswith(f"v2: digest: {digest} size: ")


def test_save_load_round_trip_and_run(ctr, tmp_path):
    docker_archive = busybox.build_docker_archive(tmp_path / "busybox.tar")
    out = ctr.ok("images", "load", "-i", str(docker_archive))
    assert out.splitlines()[-1] == "Loaded image: busybox:latest"
    saved = tmp_path / "saved.tar"
    assert ctr.ok("images", "save", "-o", str(saved), "busybox") == ""
    ctr.ok("images", "rm", "--sync", "busybox")
    assert ctr.ok("images", "ls", "-q") == ""
    with open(saved, "rb") as f:  # from stdin this time
        r = subprocess.run(ctr.argv("images", "load"), stdin=f, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "Loaded image: busybox:latest", r.stderr
    cid = ctr.new_id()
    r = ctr("run", "--rm", "busybox", cid, "cat", "/etc/hostname")
    assert r.returncode == 0, r.stderr


def test_import_a_rootfs_tarball_and_run_it(ctr, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in sorted(os.listdir(ctr.rootfs)):
            tar.add(os.path.join(ctr.rootfs, name), arcname=name)
    tarball = tmp_path / "rootfs.tar.gz"
    tarball.write_bytes(buf.getvalue())
    out = ctr.ok("images", "import", str(tarball), "local/imported:1")
    assert out.startswith("sha256:") and out.count("\n") == 1, out
    assert ctr.ok("images", "ls", "-q") == "docker.io/local/imported:1\n"
    # An imported image has no command of its own: the one given runs.
    cid = ctr.new_id()
    r = ctr("run", "--rm", "local/imported:1", cid, "sh", "-c", "echo imported")
    assert (r.returncode, r.stdout) == (0, "imported\n"), r.stderr
    one_line_error(ctr("run", "--rm", "local/imported:1", ctr.new_id()), "no command")


def test_bad_input_is_one_line(ctr, tmp_path):
    one_line_error(ctr("images", "pull", "Bad/Name"), "invalid reference format")
    r = ctr("images", "pull", "127.0.0.1:1/nothing/here:1")  # progress may come first, on stdout
    assert r.returncode == 1 and r.stderr.startswith("dockyard-ctr: ") and r.stderr.count("\n") == 1, r
    assert "127.0.0.1:1" in r.stderr, r.stderr
    one_line_error(ctr("images", "rm", "nothere"), "not found")
    one_line_error(ctr("images", "save", "-o", str(tmp_path / "x.tar"), "nothere"), "not found")
    assert not (tmp_path / "x.tar").exists()
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"junk" * 1000)
    one_line_error(ctr("images", "load", "-i", str(junk)))
    one_line_error(ctr("run", "--rm", "nothere", ctr.new_id()), "not found")
