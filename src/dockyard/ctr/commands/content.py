"""`content ls`, as ctr's `content ls`: DIGEST, SIZE, AGE, LABELS."""

import time

from dockyard.api.services.content.v1 import content_pb2 as pb

from ..output import Table, age, human_size, labels
from . import verb, verbs


def ls(session, args) -> int:
    infos = [info for response in session.content.List(pb.ListContentRequest(filters=args.filters))
             for info in response.info]
    if args.quiet:
        for info in infos:
            print(info.digest)
        return 0
    now = time.time()
    table = Table(minwidth=1, padding=1)
    table.row("DIGEST\tSIZE\tAGE\tLABELS")
    for info in infos:
        table.row(f"{info.digest}\t{human_size(info.size)}\t{age(info.created_at, now)}\t{labels(info.labels)}")
    table.write()
    return 0


def configure(parser) -> None:
    sub = verbs(parser)
    p = verb(sub, "ls", ls, "list all blobs in the store", aliases=["list"])
    p.add_argument("-q", "--quiet", action="store_true", help="print only the blob digest")
    p.add_argument("filters", metavar="FILTER", nargs="*")
