"""docker-py's integration suite (from the sdist of docker==6.1.3) against a private dockyardd.

    .venv/bin/python tests/dockerpy/run.py                       # the whole suite
    .venv/bin/python tests/dockerpy/run.py api_exec_test.py      # some files (under tests/integration)
    .venv/bin/python tests/dockerpy/run.py -- -k test_wait -x    # more pytest arguments after --

Once, under build/dockerpy/: the sdist (`pip download docker==6.1.3 --no-binary :all: --no-deps`),
its tests/ and pytest.ini unpacked into suite/, and a separate venv (venv/) with docker==6.1.3,
requests<2.32 (6.1.3 breaks with 2.32), pytest, pytest-timeout and paramiko (tests/helpers.py
imports it). Then a private dockyardd is started with tests/engine/conftest.py's Engine, the busybox
fixture is loaded and tagged as the images the suite expects (alpine:3.10 is its TEST_IMG), and
`pytest tests/integration` runs in the docker-py venv with DOCKER_HOST pointing at the engine and
DOCKER_TEST_API_VERSION=1.45. Swarm, service, secret, config, node and plugin test files are left out
(with the reason printed). At the end: pass/fail/skip/error counts, and every failure not listed
in known_failures.txt (each listed one has its reason there: a later issue, no Docker Hub here, an
engine gap). Exit status: 0 when nothing failed but what is listed, 1 otherwise. `make test` runs
it after the main suite.

Not collected by the main pytest run (not named test_*.py); `make test` and `make test-dockerpy` run it.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from tests.engine.conftest import Engine  # noqa: E402
from tests.fixtures import busybox  # noqa: E402
from tests.shim.conftest import _prctl_subreaper, reap, zombie_children  # noqa: E402

VERSION = "6.1.3"
WORK = os.path.join(REPO, "build", "dockerpy")
SDIST = os.path.join(WORK, f"docker-{VERSION}.tar.gz")
SUITE = os.path.join(WORK, "suite")
VENV = os.path.join(WORK, "venv")
VPY = os.path.join(VENV, "bin", "python")
REQUIREMENTS = [f"docker=={VERSION}", "requests<2.32", "pytest", "pytest-timeout", "paramiko"]
ENGINE_LOG = os.path.join(WORK, "dockyardd.log")
API_VERSION = "1.45"
BUSYBOX_ARCHIVE = os.path.join(REPO, "build", "fixtures", "busybox", "busybox.docker.tar")
KNOWN_FAILURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "known_failures.txt")
RETRY_JUNIT = os.path.join(WORK, "junit-retry.xml")

# The busybox fixture under the names the suite uses (TEST_IMG, build FROMs, image tests).
SEED_TAGS = ["alpine:3.10", "alpine:latest", "busybox:latest", "busybox:buildroot-2014.02",
             "hello-world:latest"]

EXCLUDED = {
    "api_swarm_test.py": "swarm mode is not part of dockyardd",
    "api_service_test.py": "services need swarm mode",
    "api_secret_test.py": "secrets need swarm mode",
    "api_config_test.py": "configs need swarm mode",
    "models_services_test.py": "services need swarm mode",
    "models_swarm_test.py": "swarm mode is not part of dockyardd",
    "models_nodes_test.py": "nodes need swarm mode",
    "api_plugin_test.py": "managed plugins are not part of dockyardd (and install from Docker Hub)",
    "credentials": "client-side credential helpers (need docker-credential-pass and gpg), and its "
                   "utils_test replaces os.environ for the rest of the session, dropping DOCKER_HOST",
}


def log(msg: str) -> None:
    print(f"[dockerpy] {msg}", flush=True)


def prepare() -> None:
    os.makedirs(WORK, exist_ok=True)
    if not os.path.isfile(SDIST):
        log(f"downloading the sdist of docker=={VERSION}")
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", f"docker=={VERSION}",
                        "--no-binary", ":all:", "--no-deps", "-d", WORK], check=True)
    if not os.path.isfile(os.path.join(SUITE, "tests", "integration", "base.py")):
        log(f"unpacking tests/ into {SUITE}")
        prefix = f"docker-{VERSION}/"
        with tarfile.open(SDIST) as tar:
            members = []
            for m in tar.getmembers():
                name = m.name[len(prefix):] if m.name.startswith(prefix) else None
                if name and (name.startswith("tests/") or name == "pytest.ini"):
                    m.name = name
                    members.append(m)
            tar.extractall(SUITE, members=members, filter="data")
    stamp = os.path.join(VENV, ".installed")
    if not os.path.isfile(stamp):
        log(f"creating {VENV}")
        subprocess.run([os.path.join(sys.base_prefix, "bin", "python3"), "-m", "venv", VENV], check=True)
        subprocess.run([VPY, "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
        with open(stamp, "w") as f:
            f.write("\n".join(REQUIREMENTS) + "\n")


def seed(engine: Engine) -> None:
    archive = BUSYBOX_ARCHIVE
    if not os.path.isfile(archive):
        archive = str(busybox.build_docker_archive(os.path.join(engine.base, "busybox.tar")))
    engine.load_busybox(archive)
    for ref in SEED_TAGS:
        repo, tag = ref.rsplit(":", 1)
        if ref != "busybox:latest":
            engine.json("POST", f"/images/busybox:latest/tag?repo={repo}&tag={tag}", expect=201)
    names = sorted(t for i in engine.json("GET", "/images/json", expect=200) for t in i.get("RepoTags") or [])
    log(f"images: {', '.join(names)}")


class Reaper(threading.Thread):
    """We are the child subreaper (the shims double-fork away from dockyard-containerd and land
    here): reap the exited ones while the suite runs, never our own known children."""

    def __init__(self, keep, socket_path):
        super().__init__(daemon=True)
        self.keep = keep
        self.socket_path = socket_path
        self.done = threading.Event()

    def run(self):
        had_socket = False
        while not self.done.wait(1.0):
            if os.path.exists(self.socket_path):
                had_socket = True
            elif had_socket:
                had_socket = False
                log(f"the engine's socket is gone ({time.strftime('%H:%M:%S')})")
            for pid in zombie_children():
                if pid not in self.keep():
                    reap(pid, 0.1)


def summarize(junit: str) -> tuple[collections.Counter, dict]:
    counts: collections.Counter = collections.Counter()
    failing: dict[str, list[str]] = collections.defaultdict(list)
    root = ET.parse(junit).getroot()
    for case in root.iter("testcase"):
        file = case.get("classname", "").replace("tests.integration.", "").split(".")[0] + ".py"
        name = case.get("classname", "").rsplit(".", 1)[-1] + "::" + case.get("name", "")
        if case.find("error") is not None:
            kind = "error"
        elif case.find("failure") is not None:
            kind = "failed"
        elif case.find("skipped") is not None:
            kind = "skipped" if case.find("skipped").get("type") != "pytest.xfail" else "xfailed"
        else:
            kind = "passed"
        counts[kind] += 1
        if kind in ("failed", "error"):
            failing[file].append(name + (" (error)" if kind == "error" else ""))
    return counts, failing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", help="files or node ids under tests/integration (default: all)")
    ap.add_argument("--timeout", type=int, default=180, help="per-test timeout (pytest-timeout)")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if os.geteuid() != 0:
        log("dockyardd runs containers: run this as root")
        return 2

    prepare()
    targets = [os.path.join("tests", "integration", f) for f in args.files] or [os.path.join("tests", "integration")]
    ignores = []
    for name, reason in EXCLUDED.items():
        log(f"excluded: {name}: {reason}")
        ignores += ["--ignore", os.path.join("tests", "integration", name)]

    _prctl_subreaper(True)
    engine = Engine()
    suite_proc = None
    reaper = Reaper(lambda: {p.pid for p in (engine.proc, suite_proc) if p is not None}, engine.socket)
    reaper.start()
    junit = os.path.join(WORK, "junit.xml")
    if os.path.exists(RETRY_JUNIT):
        os.unlink(RETRY_JUNIT)
    try:
        engine.start()
        log(f"dockyardd on {engine.url}")
        seed(engine)
        # A config.json of its own, so docker-py's context store (next to it) is private too.
        with open(os.path.join(engine.base, "docker-config", "config.json"), "w") as f:
            f.write("{}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "VIRTUAL_ENV", "PYTHON"))}
        env.update(DOCKER_HOST=engine.url, DOCKER_TEST_API_VERSION=API_VERSION,
                   DOCKER_CONFIG=os.path.join(engine.base, "docker-config"),
                   PATH=os.path.join(VENV, "bin") + ":" + env.get("PATH", "/usr/bin:/bin"))
        def run_suite(selection: list[str], report: str) -> int:
            nonlocal suite_proc
            argv = [VPY, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--timeout={args.timeout}",
                    f"--junitxml={report}", "-o", "junit_family=xunit1", *ignores, *selection, *extra]
            log(" ".join(argv))
            if os.path.exists(report):
                os.unlink(report)
            suite_proc = subprocess.Popen(argv, cwd=SUITE, env=env)
            return suite_proc.wait()

        rc = run_suite(targets, junit)
        # Failures not on the list get one more run on their own: an external suite has timing
        # tests, and one that passes alone is reported as flaky rather than failing the build.
        retried = unexpected_failures(junit) if os.path.exists(junit) else []
        if retried:
            log(f"running the {len(retried)} unexpected failures again, alone")
            run_suite([os.path.join("tests", "integration", node) for node in retried], RETRY_JUNIT)
    finally:
        reaper.done.set()
        reaper.join()
        if engine.proc is not None and engine.proc.poll() is not None:
            log(f"dockyardd died during the run (exit status {engine.proc.returncode})")
        try:
            shutil.copyfile(engine.log, ENGINE_LOG)
            log(f"dockyardd's log: {ENGINE_LOG}")
        except OSError:
            pass
        leftovers = engine.cleanup()
        if leftovers:
            log(f"cleaned up by force: {leftovers}")
        for pid in zombie_children():
            reap(pid, 1)
        _prctl_subreaper(False)

    if not os.path.exists(junit):
        log(f"pytest exited with {rc} and wrote no report")
        return 1
    counts, _ = summarize(junit)
    print()
    log("excluded files: " + ", ".join(EXCLUDED))
    log("results: " + ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "error", "skipped", "xfailed")))
    known = set(known_failures())
    failed = failed_ids(junit)
    log(f"{len(failed & known)} failing as listed in {os.path.relpath(KNOWN_FAILURES, REPO)}")
    if not args.files and not extra:
        for node in sorted(known - failed):
            log(f"now passing, take it off the list: {node}")
    unexpected = sorted(failed - known)
    if unexpected and os.path.exists(RETRY_JUNIT):
        again = failed_ids(RETRY_JUNIT)
        for node in unexpected:
            if node not in again:
                log(f"flaky: failed in the suite, passed alone: {node}")
        unexpected = [node for node in unexpected if node in again]
    for node in unexpected:
        log(f"UNEXPECTED failure: {node}")
    return 1 if unexpected else 0


def failed_ids(junit: str) -> set[str]:
    """file::Class::test of every failure and error in a junit report."""
    _, failing = summarize(junit)
    return {f"{file}::{name.removesuffix(' (error)')}" for file, names in failing.items() for name in names}


def unexpected_failures(junit: str) -> list[str]:
    return sorted(failed_ids(junit) - set(known_failures()))


def known_failures() -> dict[str, str]:
    """node id → reason, from known_failures.txt (a reason line `# …` heads each group)."""
    known, reason = {}, ""
    with open(KNOWN_FAILURES) as f:
        for line in f:
            line = line.strip()
            if line.startswith("#"):
                reason = line.lstrip("# ")
            elif line:
                known[line] = reason
    return known


if __name__ == "__main__":
    sys.exit(main())
