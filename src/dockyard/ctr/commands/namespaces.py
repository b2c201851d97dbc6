"""`namespaces ls|create|rm`, as ctr's `namespaces`."""

import sys

from dockyard.api.services.namespaces.v1 import namespaces_pb2 as pb
from dockyard.errors import DockyardError, InvalidArgument, NotFound

from ..output import Table
from . import verb, verbs


def parse_labels(pairs: list[str]) -> dict[str, str]:
    """KEY=VALUE arguments (a bare KEY is an empty value, as ctr takes it)."""
    labels = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not key:
            raise InvalidArgument(f"invalid label {pair!r}: want KEY=VALUE")
        labels[key] = value
    return labels


def ls(session, args) -> int:
    found = session.namespaces.List(pb.ListNamespacesRequest()).namespaces
    if args.quiet:
        for ns in found:
            print(ns.name)
        return 0
    table = Table(minwidth=1, padding=1)
    table.row("NAME\tLABELS\t")
    for ns in found:
        table.row(f"{ns.name}\t{','.join(sorted(f'{k}={v}' for k, v in ns.labels.items()))}\t")
    table.write()
    return 0


def create(session, args) -> int:
    session.namespaces.Create(pb.CreateNamespaceRequest(
        namespace=pb.Namespace(name=args.name, labels=parse_labels(args.labels))))
    return 0


def rm(session, args) -> int:
    # As ctr: a namespace that is not there is gone already; each name done is printed.
    status = 0
    for name in args.names:
        try:
            session.namespaces.Delete(pb.DeleteNamespaceRequest(name=name))
        except NotFound:
            pass
        except DockyardError as e:
            print(f"dockyard-ctr: unable to delete {name}: {e}", file=sys.stderr)
            status = 1
            continue
        print(name)
    return status


def configure(parser) -> None:
    sub = verbs(parser)
    p = verb(sub, "ls", ls, "list namespaces", aliases=["list"])
    p.add_argument("-q", "--quiet", action="store_true", help="print only the namespace name")
    p = verb(sub, "create", create, "create a new namespace")
    p.add_argument("name", metavar="NAME")
    p.add_argument("labels", metavar="KEY=VALUE", nargs="*")
    p = verb(sub, "rm", rm, "remove one or more namespaces", aliases=["remove"])
    p.add_argument("names", metavar="NAME", nargs="+")
