"""v2 devices: cgroup v2 has no devices.allow file; the kernel asks an eBPF program of type
BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup. `compile` turns the OCI rule list into such
a program: the last matching rule decides (rules are tested newest first), and a request no rule
matches is allowed, as in a fresh v1 devices cgroup."""

import errno
import os
import struct

from dockyard.linux import bpf

from ..common import CgroupDir, CgroupError, device_rule

# struct bpf_cgroup_dev_ctx { u32 access_type /* access << 16 | type */; u32 major; u32 minor; }
_DEV_TYPE = {"b": 1, "c": 2}
_ACCESS = {"m": 1, "r": 2, "w": 4}
_ALL_ACCESS = 7

# eBPF opcodes (class | op | source), from linux/bpf_common.h and linux/bpf.h.
_LDX_W = 0x61
_AND32_K = 0x54
_RSH32_K = 0x74
_MOV64_K = 0xB7
_MOV64_X = 0xBF
_AND64_K = 0x57
_JEQ_K = 0x15
_JNE_K = 0x55
_EXIT = 0x95

R0, R1, R2, R3, R4, R5, R6 = range(7)  # r2 type, r3 access, r4 major, r5 minor, r6 scratch


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _rule_block(rule: dict) -> tuple[bytes, bool]:
    """The instructions for one rule, and whether the rule matches every request."""
    kind, major, minor, access = device_rule(rule)
    allow = bool(rule.get("allow"))
    bits = sum(_ACCESS[c] for c in frozenset(access))
    # Each test is (instructions before the jump, jump opcode, register, immediate).
    tests = []
    if kind != "a":
        tests.append(([], _JNE_K, R2, _DEV_TYPE[kind]))
    # Allow only if every requested bit is allowed; deny if any requested bit is denied.
    mask = _ALL_ACCESS & ~bits if allow else bits
    if bits != _ALL_ACCESS:
        scratch = [_insn(_MOV64_X, R6, R3), _insn(_AND64_K, R6, imm=mask)]
        tests.append((scratch, _JNE_K if allow else _JEQ_K, R6, 0))
    if major >= 0:
        tests.append(([], _JNE_K, R4, major))
    if minor >= 0:
        tests.append(([], _JNE_K, R5, minor))
    tail = [_insn(_MOV64_K, R0, imm=int(allow)), _insn(_EXIT)]
    code: list[bytes] = []
    for i, (before, op, reg, imm) in enumerate(tests):
        code.extend(before)
        remaining = sum(len(b) + 1 for b, *_ in tests[i + 1 :]) + len(tail)
        code.append(_insn(op, reg, off=remaining, imm=imm))
    return b"".join(code + tail), not tests


def compile(rules: list[dict]) -> bytes:
    code = [
        _insn(_LDX_W, R2, R1, 0),
        _insn(_AND32_K, R2, imm=0xFFFF),
        _insn(_LDX_W, R3, R1, 0),
        _insn(_RSH32_K, R3, imm=16),
        _insn(_LDX_W, R4, R1, 4),
        _insn(_LDX_W, R5, R1, 8),
    ]
    for rule in reversed(rules):
        block, catch_all = _rule_block(rule)
        code.append(block)
        if catch_all:
            return b"".join(code)  # anything after would be unreachable, which the verifier rejects
    code += [_insn(_MOV64_K, R0, imm=1), _insn(_EXIT)]
    return b"".join(code)


def set(cg: CgroupDir, rules: list[dict]) -> None:
    """Attach the new program before detaching the old ones: while both are attached the kernel
    requires both to allow, so the container never briefly gets more access than either grants."""
    program = compile(rules)
    dir_fd = prog_fd = -1
    try:
        dir_fd = os.open(cg.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        old = bpf.query(dir_fd)
        prog_fd = bpf.load_cgroup_device_program(program)
        bpf.attach(dir_fd, prog_fd)
        for prog_id in old:
            old_fd = bpf.program_fd(prog_id)
            try:
                bpf.detach(dir_fd, old_fd)
            finally:
                os.close(old_fd)
    except OSError as err:
        hint = " (is this a cgroup v2 directory?)" if err.errno in (errno.EBADF, errno.EINVAL) else ""
        raise CgroupError(f"cannot apply device rules to {cg.path}: {err.strerror}{hint}", err.errno) from err
    finally:
        for fd in (prog_fd, dir_fd):
            if fd >= 0:
                os.close(fd)
