"""Version: the dockyard release and the source commit the daemon runs from."""

import os
import subprocess

import grpc

import dockyard
from dockyard.api.services.version.v1 import version_pb2, version_pb2_grpc


def source_revision() -> str:
    """The git commit of the source tree the package is imported from (an editable install or a
    checkout); "unknown" for an installed copy, or when git can't tell."""
    tree = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(dockyard.__file__))))
    # Only a repository whose top is exactly this tree: a site-packages inside some other
    # repository must not report that repository's commit.
    if not os.path.exists(os.path.join(tree, ".git")):
        return "unknown"
    try:
        out = subprocess.run(["git", "-C", tree, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out or "unknown"


class VersionService(version_pb2_grpc.VersionServicer):
    def __init__(self) -> None:
        self._response = version_pb2.VersionResponse(version=dockyard.__version__,
                                                     revision=source_revision())

    def Version(self, request, context):
        return self._response


def register(server: grpc.Server) -> None:
    version_pb2_grpc.add_VersionServicer_to_server(VersionService(), server)
