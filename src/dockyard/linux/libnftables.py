"""libnftables, the library the `nft` command is made of, through ctypes.

Applying a ruleset in-process costs well under a millisecond where spawning `nft` costs ~10 ms,
and it lands in the network namespace of the calling thread (the library's netlink socket is
opened when its context is made), which is how rules are put inside a container's namespace
from a thread that entered it (dockyard.network.netns.run_in).

Each call makes and frees its own context, and calls are serialized: the library keeps some
state of its own (caches, the parser's tables) that it does not promise to share safely.
"""

import ctypes
import threading

LIBRARY = "libnftables.so.1"

_lib = None
_lib_lock = threading.Lock()
_run_lock = threading.Lock()


class NftError(Exception):
    """The library refused the commands; the message is nft's own error text."""


def _load():
    global _lib
    with _lib_lock:
        if _lib is None:
            lib = ctypes.CDLL(LIBRARY, use_errno=True)
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
                getattr(lib, name).argtypes = [ctypes.c_void_p]
            for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
                getattr(lib, name).restype = ctypes.c_char_p
                getattr(lib, name).argtypes = [ctypes.c_void_p]
            lib.nft_ctx_set_dry_run.argtypes = [ctypes.c_void_p, ctypes.c_bool]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            _lib = lib
    return _lib


def available() -> bool:
    try:
        _load()
    except OSError:
        return False
    return True


def run(commands: str, dry_run: bool = False) -> str:
    """Run nft `commands` (what `nft -f -` reads) as one transaction; returns nft's output.
    `dry_run`: the kernel checks them and commits nothing (`nft --check`). OSError when the
    library is missing, NftError when the commands are refused."""
    lib = _load()
    with _run_lock:
        return _run(lib, commands, dry_run)


def _run(lib, commands: str, dry_run: bool) -> str:
    ctx = lib.nft_ctx_new(0)
    if not ctx:
        raise NftError("cannot make an nftables context")
    try:
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        if dry_run:
            lib.nft_ctx_set_dry_run(ctx, True)
        rc = lib.nft_run_cmd_from_buffer(ctx, commands.encode())
        output = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
        if rc != 0:
            error = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace").strip()
            raise NftError(error or f"nft refused the commands (status {rc})")
        return output
    finally:
        lib.nft_ctx_free(ctx)
