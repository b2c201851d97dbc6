"""Once the container init stands in the container's filesystem, no import may happen: it
would run code planted in the image as root (the CVE-2019-14271 class)."""

import os

from dockyard.runtime.init import forbid_imports


def test_imports_fail_after_forbid_imports():
    pid = os.fork()
    if pid == 0:
        status = 3
        try:
            forbid_imports()
            import json  # noqa: F401  (already loaded: still fine)
            try:
                import xml.dom.minidom  # noqa: F401  (not loaded: must fail)
                status = 1
            except ImportError:
                status = 0
        finally:
            os._exit(status)
    _, wstatus = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wstatus) == 0
