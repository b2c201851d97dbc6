"""Spec validation, compilation, caching and Docker-profile conversion; no privileges needed."""

import json
import pickle
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument, Unsupported
from dockyard.linux import seccomp as kernel
from dockyard.runtime import seccomp

PROFILE = Path(seccomp.__file__).parents[1] / "oci" / "schemas" / "seccomp-default.json"
DOCKER_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
               "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
               "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


def spec(**kw):
    base = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    base.update(kw)
    return base


def docker_profile():
    return json.loads(PROFILE.read_text())


def names_of(oci):
    return {name for call in oci["syscalls"] for name in call["names"]}


def test_compile_returns_plain_picklable_program():
    compiled = seccomp.compile(spec())
    assert kernel.valid_program(compiled.program)
    assert compiled.flags == 0 and compiled.notify is False
    assert pickle.loads(pickle.dumps(compiled)) == compiled


def test_compile_is_deterministic_and_spec_sensitive():
    assert seccomp.compile(spec()).program == seccomp.compile(spec()).program
    other = spec(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}])
    assert seccomp.compile(other).program != seccomp.compile(spec()).program


@pytest.mark.parametrize("action", sorted(seccomp.ACTIONS))
def test_every_action_compiles(action):
    call = {"names": ["getppid"], "action": action}
    compiled = seccomp.compile(spec(syscalls=[call], listenerPath="/run/agent.sock"))
    assert compiled.notify == (action == "SCMP_ACT_NOTIFY")


@pytest.mark.parametrize("op", sorted(seccomp.OPERATORS))
def test_every_operator_compiles(op):
    call = {"names": ["socket"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 0, "value": 2, "valueTwo": 2, "op": op}]}
    assert kernel.valid_program(seccomp.compile(spec(syscalls=[call])).program)


@pytest.mark.parametrize("arch", ["SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64",
                                  "SCMP_ARCH_ARM", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_RISCV64"])
def test_little_endian_arches_compile(arch):
    assert kernel.valid_program(seccomp.compile(spec(architectures=[arch])).program)


def test_arch_of_other_endianness_is_unsupported():
    # libseccomp cannot put big- and little-endian arches in one filter.
    with pytest.raises(Unsupported, match="SCMP_ARCH_S390X|s390x"):
        seccomp.compile(spec(architectures=["SCMP_ARCH_S390X"]))


@pytest.mark.parametrize("bad, message", [
    ({"defaultAction": "SCMP_ACT_NOPE"}, "unknown action"),
    ({"architectures": ["SCMP_ARCH_VAX"]}, "unknown architecture"),
    ({"flags": ["SECCOMP_FILTER_FLAG_NOPE"]}, "unknown flag"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_BOGUS"}]}, "unknown action"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]},
     "unknown operator"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}, "index"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}, "value"),
    ({"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]},
     "errnoRet"),
    ({"syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}, "names"),
    ({"syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}],
      "listenerPath": "/x"}, "write"),
    ({"syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}, "listenerPath"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "default action"),
    ({"syscalls": "mkdir"}, "list"),
])
def test_invalid_spec_raises_one_line_invalid_argument(bad, message):
    with pytest.raises(InvalidArgument, match=message) as info:
        seccomp.compile(spec(**bad))
    assert "\n" not in str(info.value)


def test_unknown_syscall_names_are_skipped():
    known = spec(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}])
    with_unknown = spec(syscalls=[{"names": ["mkdir", "no_such_syscall_2099"],
                                   "action": "SCMP_ACT_ERRNO", "errnoRet": 13}])
    assert seccomp.compile(with_unknown).program == seccomp.compile(known).program


def test_rule_equal_to_default_action_is_dropped():
    redundant = spec(syscalls=[{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                               {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}])
    assert seccomp.compile(redundant).program == seccomp.compile(spec()).program


def test_errno_defaults_to_eperm():
    implicit = spec(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}])
    explicit = spec(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}])
    assert seccomp.compile(implicit).program == seccomp.compile(explicit).program


def test_conditions_on_one_argument_become_separate_rules():
    # libseccomp itself refuses two conditions on one argument in a single rule.
    with kernel.FilterBuilder(kernel.ACT_ALLOW) as builder, pytest.raises(OSError):
        builder.add_rule(kernel.ACT_ERRNO | 1, kernel.resolve_syscall("socket"),
                         [(0, kernel.CMP_EQ, 2, 0), (0, kernel.CMP_EQ, 10, 0)])
    both = [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 10, "op": "SCMP_CMP_EQ"}]
    split = [{"names": ["socket"], "action": "SCMP_ACT_ERRNO", "args": [arg]} for arg in both]
    combined = [{"names": ["socket"], "action": "SCMP_ACT_ERRNO", "args": both}]
    assert seccomp.compile(spec(syscalls=combined)).program == \
        seccomp.compile(spec(syscalls=split)).program


def test_flags():
    compiled = seccomp.compile(spec(flags=["SECCOMP_FILTER_FLAG_LOG",
                                           "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]))
    assert compiled.flags == kernel.FILTER_FLAG_LOG | kernel.FILTER_FLAG_SPEC_ALLOW


def test_notify_sets_new_listener_and_tsync_esrch():
    compiled = seccomp.compile(spec(
        flags=["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        listenerPath="/run/agent.sock",
        syscalls=[{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]))
    assert compiled.notify
    assert compiled.flags == (kernel.FILTER_FLAG_TSYNC | kernel.FILTER_FLAG_TSYNC_ESRCH
                              | kernel.FILTER_FLAG_NEW_LISTENER
                              | kernel.FILTER_FLAG_WAIT_KILLABLE_RECV)


def test_wait_killable_recv_without_listener_is_dropped():
    compiled = seccomp.compile(spec(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]))
    assert compiled.flags == 0


def test_cache_hit_returns_identical_bytes_without_libseccomp(tmp_path, monkeypatch):
    first = seccomp.compile(spec(), cache_dir=tmp_path)
    [entry] = tmp_path.glob("*.bpf")
    assert len(entry.stem) == 64 and entry.read_bytes() == first.program
    monkeypatch.setattr(kernel, "FilterBuilder", None)  # any compile attempt now fails
    assert seccomp.compile(spec(), cache_dir=tmp_path) == first


def test_cache_key_ignores_key_order(tmp_path):
    seccomp.compile(spec(), cache_dir=tmp_path)
    seccomp.compile(dict(reversed(list(spec().items()))), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.bpf"))) == 1


def test_torn_cache_entry_is_rebuilt(tmp_path):
    good = seccomp.compile(spec(), cache_dir=tmp_path)
    [entry] = tmp_path.glob("*.bpf")
    entry.write_bytes(good.program[:5])
    assert seccomp.compile(spec(), cache_dir=tmp_path) == good
    assert entry.read_bytes() == good.program
    assert not list(tmp_path.glob(".tmp-*"))


def test_unwritable_cache_still_compiles(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert seccomp.compile(spec(), cache_dir=blocker / "cache") == seccomp.compile(spec())
    err = capsys.readouterr().err
    assert "warning" in err and "seccomp cache write failed" in err and str(blocker / "cache") in err


def test_cache_accepts_str_and_creates_missing_dirs(tmp_path):
    cache = tmp_path / "a" / "b"
    first = seccomp.compile(spec(), cache_dir=str(cache))
    [entry] = cache.glob("*.bpf")
    assert entry.read_bytes() == first.program
    assert cache.stat().st_mode & 0o777 == 0o700
    assert seccomp.compile(spec(), cache_dir=cache) == first


def test_cache_key_is_sha256_of_the_canonical_spec():
    import hashlib
    import platform

    canonical = json.dumps({"format": seccomp._CACHE_FORMAT, "libseccomp": kernel.library_version(),
                            "machine": platform.machine(), "spec": spec()},
                           sort_keys=True, separators=(",", ":"))
    assert seccomp._cache_key(spec()) == hashlib.sha256(canonical.encode()).hexdigest()


def test_compiled_filter_is_an_immutable_value():
    a = kernel.CompiledFilter(program=b"\x06\x00\x00\x00\x00\x00\xff\x7f", flags=2, notify=False)
    b = kernel.CompiledFilter(b"\x06\x00\x00\x00\x00\x00\xff\x7f", 2, False)
    assert a == b and hash(a) == hash(b) and (a.program, a.flags, a.notify) == (b.program, 2, False)
    assert a != kernel.CompiledFilter(program=a.program, flags=0, notify=False)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        again = pickle.loads(pickle.dumps(a, protocol))
        assert again == a and type(again) is kernel.CompiledFilter
    assert repr(a) == f"CompiledFilter(program={a.program!r}, flags=2, notify=False)"
    with pytest.raises(AttributeError):
        a.flags = 0


def _modules_after(code: str) -> set[str]:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_imports_stay_light():
    """Each dockyard-runc verb is a fresh interpreter; only what a cached compile needs loads."""
    heavy = {"dataclasses", "inspect", "typing", "logging", "hashlib", "tempfile", "pathlib",
             "platform", "socket"}
    # (json, hence re and functools, comes with dockyard.runtime.log, which the CLI loads anyway.)
    assert not _modules_after("import dockyard.linux.seccomp") & (heavy | {"functools", "re", "json"})
    assert not _modules_after("import dockyard.runtime.seccomp") & heavy


def test_features_shape():
    features = seccomp.features()
    assert features["enabled"] is True
    assert "SCMP_ACT_NOTIFY" in features["actions"]
    assert "SCMP_CMP_MASKED_EQ" in features["operators"]
    assert "SCMP_ARCH_X86_64" in features["archs"]
    assert set(features["supportedFlags"]) <= set(features["knownFlags"])
    assert "SECCOMP_FILTER_FLAG_LOG" in features["supportedFlags"]


def test_docker_profile_arch_map_and_caps():
    oci = seccomp.docker_profile_to_oci(docker_profile(), DOCKER_CAPS, kernel_release="6.1.0")
    assert oci["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert oci["defaultAction"] == "SCMP_ACT_ERRNO" and oci["defaultErrnoRet"] == 1
    names = names_of(oci)
    assert {"getpid", "arch_prctl", "chroot", "ptrace"} <= names  # amd64, SYS_CHROOT, 4.8+
    assert not {"unshare", "mount", "setns", "reboot", "set_tls"} & names
    assert all("includes" not in c and "excludes" not in c for c in oci["syscalls"])
    clone3 = [c for c in oci["syscalls"] if c["names"] == ["clone3"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]


def test_docker_profile_with_sys_admin():
    oci = seccomp.docker_profile_to_oci(docker_profile(), DOCKER_CAPS + ["CAP_SYS_ADMIN"],
                                        kernel_release="6.1.0")
    names = names_of(oci)
    assert {"unshare", "mount", "setns", "clone3"} <= names
    assert not any(c["names"] == ["clone3"] and c["action"] == "SCMP_ACT_ERRNO"
                   for c in oci["syscalls"])


def test_docker_profile_min_kernel_and_other_arch():
    old = seccomp.docker_profile_to_oci(docker_profile(), [], kernel_release="4.4.0")
    assert "ptrace" not in names_of(old)
    arm = seccomp.docker_profile_to_oci(docker_profile(), [], arch="aarch64",
                                        kernel_release="6.1")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "set_tls" in names_of(arm) and "arch_prctl" not in names_of(arm)


def test_docker_profile_rejects_unknown_arch():
    with pytest.raises(InvalidArgument):
        seccomp.docker_profile_to_oci(docker_profile(), [], arch="vax")


def test_converted_default_profile_compiles():
    oci = seccomp.docker_profile_to_oci(docker_profile(), DOCKER_CAPS)
    compiled = seccomp.compile(oci)
    assert kernel.valid_program(compiled.program) and not compiled.notify
