"""Validation of every name a client hands us, before it reaches SQL or the filesystem.

Rules follow containerd (`pkg/identifiers`, `pkg/labels`, `pkg/namespaces`): identifiers are
DNS-label-like, digests are strict `sha256:<64 lowercase hex>`, labels are bounded. Digests and
refs never become paths by string joins: a digest's hex is only used once it matched the regex
here, and ingest directories are named by the sha256 of the ref."""

import re

from dockyard.errors import InvalidArgument

# containerd pkg/identifiers: alphanumerics separated by single '.', '_' or '-'; at most 76 chars.
IDENTIFIER_MAX = 76
_IDENTIFIER = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*\Z")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}\Z")
LABEL_MAX = 4096  # key + value bytes, as containerd pkg/labels
REF_MAX = 1024


def validate_identifier(value: str, what: str = "identifier") -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{what} must not be empty")
    if len(value) > IDENTIFIER_MAX:
        raise InvalidArgument(f"{what} {value[:IDENTIFIER_MAX]!r}… is longer than {IDENTIFIER_MAX} characters")
    if not _IDENTIFIER.match(value):
        raise InvalidArgument(f"{what} {value!r} must match {_IDENTIFIER.pattern[:-2]}")
    return value


def validate_namespace(name: str) -> str:
    validate_identifier(name, "namespace")
    # "version" is reserved by containerd's metadata layout (docs/namespaces.md).
    if name == "version":
        raise InvalidArgument("namespace name 'version' is reserved")
    return name


def validate_digest(value: str) -> str:
    if not isinstance(value, str) or not _DIGEST.match(value):
        raise InvalidArgument(f"invalid digest {str(value)[:80]!r}: want sha256:<64 lowercase hex>")
    return value


def validate_ref(ref: str) -> str:
    """An ingest ref is free text chosen by the client (e.g. `layer-sha256:…`); it is only ever
    hashed into a directory name, but it is stored in a file and logged, so keep it printable."""
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument("ingest ref must not be empty")
    if len(ref) > REF_MAX or not ref.isprintable():
        raise InvalidArgument(f"invalid ingest ref {ref[:80]!r}")
    return ref


def validate_key(key: str, what: str = "snapshot key") -> str:
    """Snapshot keys and image names are free text in containerd; refuse only what cannot be
    stored or shown safely."""
    if not isinstance(key, str) or not key:
        raise InvalidArgument(f"{what} must not be empty")
    if len(key) > REF_MAX or not key.isprintable():
        raise InvalidArgument(f"invalid {what} {key[:80]!r}")
    return key


def validate_labels(labels: dict[str, str] | None) -> dict[str, str]:
    labels = dict(labels or {})
    for k, v in labels.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidArgument("label keys and values must be strings")
        if not k:
            raise InvalidArgument("label key must not be empty")
        if len(k.encode()) + len(v.encode()) > LABEL_MAX:
            raise InvalidArgument(f"label {k[:64]!r}: key and value exceed {LABEL_MAX} bytes")
    return labels


def apply_label_update(current: dict[str, str], labels: dict[str, str] | None,
                       fieldpaths: list[str] | None) -> dict[str, str]:
    """containerd's Update semantics for labels: no fieldpaths replaces them all; `labels`
    replaces them all; `labels.<key>` sets that key (or removes it when absent/empty)."""
    labels = validate_labels(labels)
    if not fieldpaths:
        return labels
    result = dict(current)
    for path in fieldpaths:
        if path == "labels":
            result = dict(labels)
        elif path.startswith("labels."):
            key = path[len("labels."):]
            if labels.get(key):
                result[key] = labels[key]
            else:
                result.pop(key, None)
        else:
            raise InvalidArgument(f"cannot update {path!r}: only labels are mutable")
    return validate_labels(result)
