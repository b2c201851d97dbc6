"""Container names and ids as dockerd makes and checks them.

Ids are 64 random hex digits whose 12-digit short form is never all decimal digits (so a short
id cannot be mistaken for a number; moby `pkg/stringid`). Names given by the user must match
`[a-zA-Z0-9][a-zA-Z0-9_.-]+` after an optional "/"; unnamed containers get "adjective_noun"
names — dockerd's scheme (`pkg/namesgenerator`), with our own harbour-themed word lists — and,
after a clash, a digit appended; after six clashes, the short id.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator

from dockyard.errors import InvalidArgument

ADJECTIVES = (
    "agile", "amber", "blithe", "bold", "brave", "breezy", "bright", "brisk", "calm", "candid",
    "cheerful", "clever", "cosmic", "crisp", "curious", "daring", "dapper", "eager", "earnest",
    "fearless", "festive", "fluent", "gentle", "gleaming", "golden", "graceful", "hardy",
    "humble", "jolly", "keen", "lively", "lucid", "mellow", "merry", "modest", "nimble", "noble",
    "patient", "plucky", "quiet", "radiant", "rapid", "serene", "spry", "steady", "sunny",
    "swift", "tidy", "vivid", "witty", "zesty",
)

NOUNS = (
    "anchor", "barge", "beacon", "bollard", "bowline", "buoy", "capstan", "cargo", "compass",
    "cove", "cutter", "dinghy", "estuary", "ferry", "frigate", "galley", "gangway", "harbor",
    "hawser", "hull", "jetty", "keel", "ketch", "lagoon", "lantern", "lighthouse", "marina",
    "mast", "mooring", "oar", "pier", "pilot", "pontoon", "quay", "rudder", "schooner",
    "sextant", "skiff", "sloop", "tiller", "tugboat", "wharf", "winch", "yawl",
)

NAME_PATTERN = "[a-zA-Z0-9][a-zA-Z0-9_.-]"
_VALID_NAME = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_HEX = re.compile(r"[0-9a-f]*")
NAME_ATTEMPTS = 6


def random_name(retry: int = 0) -> str:
    """A random "adjective_noun"; from the second attempt on (`retry` > 0) with a digit."""
    name = f"{secrets.choice(ADJECTIVES)}_{secrets.choice(NOUNS)}"
    if retry > 0:
        name += str(secrets.randbelow(10))
    return name


def candidate_names(container_id: str) -> Iterator[str]:
    """Names to try, in order, for an unnamed container until one is free: six random names,
    then its short id (which is unique)."""
    for retry in range(NAME_ATTEMPTS):
        yield random_name(retry)
    yield short(container_id)


def validate_name(name: str) -> str:
    """The name without its optional leading "/"; InvalidArgument in dockerd's words if bad."""
    if not isinstance(name, str) or not _VALID_NAME.fullmatch(name):
        raise InvalidArgument(
            f"Invalid container name ({name}), only {NAME_PATTERN} are allowed")
    return name.removeprefix("/")


def new_id() -> str:
    """64 random hex digits whose short form is not all decimal digits."""
    while True:
        id = secrets.token_hex(32)
        if not short(id).isdigit():
            return id


def short(id: str) -> str:
    """The 12-character short form of an id or digest ("sha256:" and the like dropped)."""
    return id.partition(":")[2][:12] if ":" in id else id[:12]


def is_id_prefix(text: str) -> bool:
    """Whether `text` could be (the start of) a hex id."""
    return bool(text) and len(text) <= 64 and bool(_HEX.fullmatch(text))


def match_id_prefix(prefix: str, ids: Iterable[str]) -> str | None:
    """The one id of `ids` starting with `prefix`; None when none does (the caller says what
    was not found, "No such container: x"); InvalidArgument when several do, as dockerd.
    Image ids may carry "sha256:" on either side: it is ignored for the comparison, and the id
    is returned as given."""
    bare = prefix.removeprefix("sha256:")
    if not is_id_prefix(bare):
        return None
    found = None
    for id in ids:
        if id.removeprefix("sha256:").startswith(bare):
            if found is not None and found != id:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {prefix}")
            found = id
    return found
