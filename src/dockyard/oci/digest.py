"""Content digests as the OCI image spec defines them (image-spec descriptor.md "Digests").

A digest is `algorithm ":" encoded`. We accept the two registered algorithms with their exact
encodings — `sha256` (64 lowercase hex, required by the spec) and `sha512` (128 lowercase hex) —
and refuse everything else, so a digest that passed `validate` is safe to use as a file name
component (its hex) and to compare as a string."""

import hashlib
import re

from dockyard.errors import InvalidArgument

# image-spec descriptor.md "Registered algorithms": lowercase hex of the exact length.
_ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})\Z")


def sha256(data: bytes) -> str:
    """The sha256 digest of `data`, as "sha256:<hex>"."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def validate(d: str) -> str:
    """Return `d` if it is a well-formed sha256 or sha512 digest, else raise InvalidArgument."""
    if not isinstance(d, str) or not _DIGEST.match(d):
        shown = d[:80] if isinstance(d, str) else type(d).__name__
        raise InvalidArgument(f"invalid digest {shown!r}: want sha256:<64 lowercase hex> "
                              "or sha512:<128 lowercase hex>")
    return d


def algorithm_of(d: str) -> str:
    return validate(d).split(":", 1)[0]


def hex_of(d: str) -> str:
    """The encoded part of a validated digest (safe as a path component)."""
    return validate(d).split(":", 1)[1]


def short_id(d: str) -> str:
    """The first 12 hex characters: Docker's id for a layer in progress output and image ids."""
    return hex_of(d)[:12]


class Hasher:
    """Incremental digest in the algorithm of an expected digest (or sha256 by default), so a
    stream can be checked against a descriptor while it is copied."""

    def __init__(self, algorithm_or_digest: str = "sha256"):
        algorithm = algorithm_or_digest
        if ":" in algorithm_or_digest:
            algorithm = algorithm_of(algorithm_or_digest)
        if algorithm not in _ALGORITHMS:
            raise InvalidArgument(f"unsupported digest algorithm {algorithm[:32]!r}")
        self.algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self.size = 0

    def update(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)

    def digest(self) -> str:
        return f"{self.algorithm}:{self._hash.hexdigest()}"

    def copy(self) -> "Hasher":
        other = Hasher.__new__(Hasher)
        other.algorithm = self.algorithm
        other._hash = self._hash.copy()
        other.size = self.size
        return other
