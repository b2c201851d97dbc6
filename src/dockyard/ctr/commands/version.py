"""`version`: the client's release and the server's release and source revision, as ctr
prints them. (The client's revision is not shown: the function that finds it lives in the
daemon's services package, whose import would cost every call more than the call itself.)"""

import platform

from google.protobuf import empty_pb2

import dockyard


def run(session, args) -> int:
    print("Client:")
    print(f"  Version:  {dockyard.__version__}")
    print(f"  Python version: {platform.python_version()}")
    print()
    server = session.version.Version(empty_pb2.Empty())
    print("Server:")
    print(f"  Version:  {server.version}")
    print(f"  Revision: {server.revision}")
    return 0


def configure(parser) -> None:
    parser.set_defaults(run=run)
