"""The images the pull benchmark moves, built here once and cached under build/bench-images,
and the private registry they are pushed into.

    .venv/bin/python bench/images.py [--rebuild] [NAME...]     # build (or check) the cache

Each image is an OCI image layout (index.json, oci-layout, blobs/sha256) with one tar+gzip
layer, tagged `latest`:
  busybox    the busybox fixture (tests/fixtures/busybox.py build_oci_layout): ~1 MB, ~400 entries
  debian     Debian bookworm `debootstrap --variant=minbase` from the mirror the host's apt uses
             (/etc/apt/sources.list*), packed as one layer with numeric owners and without the
             contents of /dev, /proc and /sys (as docker's images): ~200 MB unpacked
  smallfiles 50,000 small files (64 B to 4 KiB, text) in 500 directories: the per-entry cost of
             applying a layer, not its bytes
A layout is rebuilt only when it is missing, or its `.built` stamp names another recipe version.
Building `debian` needs root and the network path to the mirror (a minute or two, once).

The registry is Debian's docker-registry (distribution 2.8) on 127.0.0.1 with a free port and
storage in a temp dir: tests/fixtures/registry.py's start_registry() when that module exists
(the test suites' fixture), else a private one started here the same way. Images go in with
`skopeo copy oci:<layout>:latest docker://127.0.0.1:<port>/bench/<name>:latest`, which copies the
blobs as they are (the digests in the layout are what a pull resolves)."""

import argparse
import glob
import gzip
import hashlib
import io
import json
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO  # noqa: E402
from tests.fixtures import busybox  # noqa: E402

CACHE = os.path.join(REPO, "build", "bench-images")
RECIPE = "1"  # bump when a builder changes: cached layouts with another stamp are rebuilt
NAMES = ("busybox", "debian", "smallfiles")
SUITE = "bookworm"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
CREATED = "2000-01-01T00:00:00Z"
SMALL_FILES, SMALL_DIRS = 50_000, 500

MEDIA_INDEX, MEDIA_MANIFEST = busybox.MEDIA_INDEX, busybox.MEDIA_MANIFEST
MEDIA_CONFIG, MEDIA_LAYER_GZIP = busybox.MEDIA_CONFIG, busybox.MEDIA_LAYER_GZIP
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
          "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}


class BuildError(Exception):
    pass


# -- where the mirror is ----------------------------------------------------------------------

def apt_mirror(suite: str = SUITE) -> str:
    """The first Debian archive URI the host's apt uses for `suite` (deb822 .sources files and
    one-line .list files; files renamed to .disabled… are not read by apt and not here)."""
    paths = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list")),
             *sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))]
    for path in paths:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.split()
                if ("deb" in fields.get("types", []) and suite in fields.get("suites", [])
                        and fields.get("enabled", ["yes"]) != ["no"]):
                    for uri in fields.get("uris", []):
                        if uri.startswith(("http://", "https://")):
                            return uri.rstrip("/")
        else:
            for line in text.splitlines():
                words = [w for w in line.split("#")[0].split() if not w.startswith("[")]
                if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                    return words[1].rstrip("/")
    return FALLBACK_MIRROR


# -- writing an OCI layout ----------------------------------------------------------------------

class _HashingWriter:
    """A binary sink that hashes and counts what passes through to `out`."""

    def __init__(self, out):
        self.out, self.hash, self.size = out, hashlib.sha256(), 0

    def write(self, data) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self):
        self.out.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def _write_layer(blobs_tmp: str, fill) -> tuple[str, str, int]:
    """Runs `fill(tarfile)` into a gzip layer file; returns (path, diff_id, compressed size) with
    the file renamed to its digest under the blobs directory."""
    os.makedirs(blobs_tmp, exist_ok=True)
    tmp = os.path.join(blobs_tmp, "layer.partial")
    with open(tmp, "wb") as raw:
        compressed = _HashingWriter(raw)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=6, mtime=0) as gz:
            plain = _HashingWriter(gz)
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                fill(tar)
    path = os.path.join(blobs_tmp, compressed.digest.split(":")[1])
    os.rename(tmp, path)
    return compressed.digest, plain.digest, compressed.size


def _finish_layout(dest: str, layer_digest: str, diff_id: str, layer_size: int, config: dict) -> None:
    blobs = os.path.join(dest, "blobs", "sha256")
    config.setdefault("architecture", GOARCH.get(platform.machine(), platform.machine()))
    config.setdefault("os", "linux")
    config.setdefault("created", CREATED)
    config["rootfs"] = {"type": "layers", "diff_ids": [diff_id]}
    config_bytes = busybox.canonical_json(config)
    manifest = busybox.canonical_json({
        "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
        "config": busybox.descriptor(MEDIA_CONFIG, config_bytes),
        "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": layer_digest, "size": layer_size}]})
    for blob in (config_bytes, manifest):
        with open(os.path.join(blobs, busybox.digest(blob).split(":")[1]), "wb") as f:
            f.write(blob)
    with open(os.path.join(dest, "oci-layout"), "wb") as f:
        f.write(busybox.canonical_json({"imageLayoutVersion": "1.0.0"}))
    with open(os.path.join(dest, "index.json"), "wb") as f:
        f.write(busybox.canonical_json({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [
            busybox.descriptor(MEDIA_MANIFEST, manifest, annotations={busybox.REF_NAME: "latest"})]}))


# -- the builders ---------------------------------------------------------------------------------

def _build_busybox(dest: str, work: str, log=print) -> None:
    busybox.build_oci_layout(dest)


def _debootstrap(rootfs: str, log) -> None:
    if not shutil.which("debootstrap"):
        raise BuildError("debootstrap not found (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise BuildError("building the debian image needs root (debootstrap)")
    mirror = apt_mirror()
    log(f"debian: debootstrap --variant=minbase {SUITE} from {mirror} (once; a minute or two)")
    with open(os.path.join(os.path.dirname(rootfs), "debootstrap.log"), "wb") as out:
        r = subprocess.run(["debootstrap", "--variant=minbase", SUITE, rootfs, mirror],
                           stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise BuildError(f"debootstrap failed (exit {r.returncode}); see {out.name}")
    # What debootstrap leaves that no image carries: the downloaded .debs and apt's lists.
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*"):
        for path in glob.glob(os.path.join(rootfs, pattern)):
            os.unlink(path)


def _add_tree(tar: tarfile.TarFile, rootfs: str) -> None:
    """The tree under rootfs, sorted, numeric owners only, /dev /proc /sys kept empty."""
    def clean(info: tarfile.TarInfo):
        if info.name.split("/", 1)[0] in ("dev", "proc", "sys") and "/" in info.name:
            return None
        info.uname = info.gname = ""
        return info
    for name in sorted(os.listdir(rootfs)):
        tar.add(os.path.join(rootfs, name), arcname=name, recursive=True, filter=clean)


def _build_debian(dest: str, work: str, log=print) -> None:
    rootfs = os.path.join(work, "rootfs")
    _debootstrap(rootfs, log)
    log("debian: packing the rootfs as one tar+gzip layer")
    blobs = os.path.join(dest, "blobs", "sha256")
    digest, diff_id, size = _write_layer(blobs, lambda tar: _add_tree(tar, rootfs))
    _finish_layout(dest, digest, diff_id, size, {
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["bash"]},
        "history": [{"created": CREATED, "created_by": f"debootstrap --variant=minbase {SUITE}"}]})


def _small_files(tar: tarfile.TarFile) -> None:
    rng = random.Random(4)  # fixed: the same layer every build
    per_dir = SMALL_FILES // SMALL_DIRS

    def entry(name: str, kind: bytes, size: int = 0, mode: int = 0o644) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.size, info.mode, info.mtime = kind, size, mode, busybox.MTIME
        return info
    tar.addfile(entry("data", tarfile.DIRTYPE, mode=0o755))
    for d in range(SMALL_DIRS):
        top = f"data/d{d:03d}"
        tar.addfile(entry(top, tarfile.DIRTYPE, mode=0o755))
        for n in range(per_dir):
            line = f"{top}/f{n:03d} {rng.getrandbits(64):016x}\n".encode()
            data = (line * (rng.randint(64, 4096) // len(line) + 1))[:rng.randint(64, 4096)]
            tar.addfile(entry(f"{top}/f{n:03d}", tarfile.REGTYPE, len(data)), io.BytesIO(data))


def _build_smallfiles(dest: str, work: str, log=print) -> None:
    blobs = os.path.join(dest, "blobs", "sha256")
    digest, diff_id, size = _write_layer(blobs, _small_files)
    _finish_layout(dest, digest, diff_id, size, {
        "config": {"Cmd": ["/data"]},
        "history": [{"created": CREATED, "created_by": f"bench/images.py: {SMALL_FILES} small files"}]})


BUILDERS = {"busybox": _build_busybox, "debian": _build_debian, "smallfiles": _build_smallfiles}


def layout(name: str, *, rebuild: bool = False, log=print) -> str:
    """The cached OCI layout of image `name`, built first if missing or from another recipe."""
    if name not in BUILDERS:
        raise BuildError(f"unknown image {name!r} (have: {', '.join(NAMES)})")
    home = os.path.join(CACHE, name)
    dest, stamp = os.path.join(home, "oci"), os.path.join(home, ".built")
    try:
        with open(stamp) as f:
            if f.read().strip() == RECIPE and not rebuild:
                return dest
    except OSError:
        pass
    os.makedirs(home, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f"build-{name}-", dir=home)
    try:
        shutil.rmtree(dest, ignore_errors=True)
        t0 = time.monotonic()
        BUILDERS[name](dest, work, log=log)
        with open(stamp, "w") as f:
            f.write(RECIPE + "\n")
        log(f"{name}: built in {time.monotonic() - t0:.0f} s -> {dest}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def layout_facts(dest: str, count: bool = True) -> dict:
    """Sizes of the one-layer image in `dest`: compressed layer bytes, unpacked bytes, entries
    (the last two read from the layer unless `count` is false)."""
    with open(os.path.join(dest, "index.json"), "rb") as f:
        manifest_digest = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(dest, "blobs", "sha256", manifest_digest.split(":")[1]), "rb") as f:
        manifest = json.load(f)
    layer = manifest["layers"][0]
    facts = {"manifest": manifest_digest, "layer_bytes": layer["size"]}
    if count:
        facts["entries"] = facts["unpacked_bytes"] = 0
        with tarfile.open(os.path.join(dest, "blobs", "sha256", layer["digest"].split(":")[1]), "r:gz") as tar:
            for info in tar:
                facts["entries"] += 1
                facts["unpacked_bytes"] += info.size
    return facts


# -- the registry -----------------------------------------------------------------------------------

class _Registry:
    """Debian's docker-registry on 127.0.0.1:<free port>, storage and log under `workdir`,
    stopped by pid. Used when tests/fixtures/registry.py is not there."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.proc = None

    def start(self, timeout: float = 30) -> "_Registry":
        os.makedirs(self.workdir, exist_ok=True)
        config = os.path.join(self.workdir, "config.yml")
        with open(config, "w") as f:
            f.write(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {os.path.join(self.workdir, "storage")}
  delete:
    enabled: true
http:
  addr: {self.host}
""")
        self._log = open(os.path.join(self.workdir, "registry.log"), "ab")
        self.proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", config], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BuildError(f"docker-registry exited with {self.proc.returncode} (log: {self._log.name})")
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BuildError(f"docker-registry did not answer on {self.host}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None


def start_registry(workdir: str):
    """A plain-HTTP registry on 127.0.0.1 (the tests' fixture when present) with `.host` and
    `.stop()`."""
    try:
        from tests.fixtures.registry import start_registry as fixture
    except ImportError:
        fixture = None
    if fixture is not None:
        return fixture(workdir)
    return _Registry(workdir).start()


def push(name: str, registry, *, log=print) -> str:
    """skopeo-copies image `name` (built if needed) to <registry>/bench/<name>:latest and checks
    the registry holds the layout's own manifest (blobs copied as they are); returns the ref."""
    dest = layout(name, log=log)
    ref = f"{registry.host}/bench/{name}:latest"
    with tempfile.TemporaryDirectory(prefix="skopeo-") as tmp:
        digestfile = os.path.join(tmp, "digest")
        env = dict(os.environ, REGISTRY_AUTH_FILE=os.path.join(tmp, "auth.json"))  # no host creds
        r = subprocess.run(["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
                            "--dest-no-creds", "--digestfile", digestfile, f"oci:{dest}:latest",
                            f"docker://{ref}"], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise BuildError(f"skopeo copy {name}: "
                             f"{r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
        with open(digestfile) as f:
            pushed = f.read().strip()
    want = layout_facts(dest, count=False)["manifest"]
    if pushed != want:
        raise BuildError(f"skopeo pushed {name} as {pushed}, not the layout's {want} (it re-encoded the image)")
    return ref


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", default=list(NAMES), help=f"images (default: {' '.join(NAMES)})")
    parser.add_argument("--rebuild", action="store_true", help="rebuild even if cached")
    args = parser.parse_args(argv)
    try:
        for name in args.names:
            dest = layout(name, rebuild=args.rebuild)
            facts = layout_facts(dest)
            print(f"{name}: {dest}: layer {facts['layer_bytes'] / 1e6:.1f} MB gzip, "
                  f"{facts['unpacked_bytes'] / 1e6:.1f} MB in {facts['entries']} entries")
    except BuildError as e:
        print(f"bench/images.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
