"""Image references as Docker reads them (distribution/reference `reference.go` grammar,
`normalize.go` ParseNormalizedNamed).

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path
    domain     := host [ ":" port ]      host := domain-name | IPv4 | "[" IPv6 "]"
    path       := component ( "/" component )*
    component  := [a-z0-9]+ ( ( [._] | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}

Normalisation: a first component is a domain only when it contains "." or ":", is "localhost",
or has uppercase letters; otherwise the domain is docker.io, and a single-component docker.io
path gets "library/". A reference with neither tag nor digest gets "latest"."""

import re
from dataclasses import dataclass, replace

from dockyard.errors import InvalidArgument
from dockyard.oci import digest as _digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
DEFAULT_TAG = "latest"
NAME_MAX = 255  # distribution/reference NameTotalLengthMax

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*\Z")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = re.compile(rf"{_HOST}(?::[0-9]+)?\Z")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_ID = re.compile(r"[a-f0-9]{64}\Z")
_TEXT_MAX = 4096


def _invalid(why: str) -> InvalidArgument:
    return InvalidArgument(f"invalid reference format: {why}")


def validate_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise _invalid(f"invalid tag {str(tag)[:140]!r}")
    return tag


def _validate_digest(d: str) -> str:
    try:
        return _digest.validate(d)
    except InvalidArgument as e:
        raise _invalid(str(e)) from None


@dataclass(frozen=True)
class Reference:
    """A normalised reference: `domain` ("docker.io", "127.0.0.1:5000"), `path`
    ("library/busybox"), and a `tag` and/or `digest` (either may be empty)."""
    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def object(self) -> str:
        """What goes after /manifests/: the digest when there is one, else the tag."""
        return self.digest or self.tag

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def familiar_name(self) -> str:
        """Docker's short repository name: "busybox", "user/repo", "localhost:5000/x"."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith("library/") and self.path.count("/") == 1:
            return self.path[len("library/"):]
        return self.path

    def familiar(self) -> str:
        """Docker's short form: "busybox:latest", "localhost:5000/x:1", "user/repo:tag"."""
        s = self.familiar_name()
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def with_tag(self, tag: str) -> "Reference":
        """This name with `tag` (a digest, if any, is kept, as distribution's WithTag)."""
        return replace(self, tag=validate_tag(tag))

    def with_digest(self, digest: str) -> "Reference":
        """This name with `digest` (a tag, if any, is kept, as distribution's WithDigest)."""
        return replace(self, digest=_validate_digest(digest))

    def without_object(self) -> "Reference":
        """The bare repository (no tag, no digest)."""
        return replace(self, tag="", digest="")


def _split_domain(name: str) -> tuple[str, str]:
    """distribution/reference splitDockerDomain."""
    first, sep, rest = name.partition("/")
    if not sep or (not any(c in first for c in ".:") and first != "localhost"
                   and first.lower() == first):
        domain, path = DEFAULT_DOMAIN, name
    else:
        domain, path = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = "library/" + path
    return domain, path


def parse(text: str, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse and normalise a reference as `docker pull` does. With `default_tag=None` a
    reference without tag or digest stays without one."""
    if not isinstance(text, str) or not text:
        raise _invalid("empty reference")
    if len(text) > _TEXT_MAX or not text.isprintable() or any(c.isspace() for c in text):
        raise _invalid(f"{text[:80]!r}")
    if _ID.match(text):
        raise InvalidArgument(f"invalid repository name ({text}), cannot specify 64-byte "
                              "hexadecimal strings")
    rest, at, dig = text.partition("@")
    if at:
        _validate_digest(dig)
    tag = ""
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1:]
        validate_tag(tag)
    domain, path = _split_domain(rest)
    if path.lower() != path:
        raise _invalid(f"repository name ({path}) must be lowercase")
    if not domain or not _DOMAIN.match(domain):
        raise _invalid(f"invalid domain {domain[:80]!r} in {text[:160]!r}")
    if not path or not _PATH.match(path):
        raise _invalid(f"invalid repository name {path[:160]!r}")
    if len(domain) + 1 + len(path) > NAME_MAX:
        raise _invalid(f"repository name must not be more than {NAME_MAX} characters")
    if not tag and not dig and default_tag is not None:
        tag = validate_tag(default_tag)
    return Reference(domain, path, tag, dig)


def registry_host(domain: str) -> str:
    """The host serving a domain's registry API: Docker Hub's lives on its own host."""
    return DOCKER_HUB_REGISTRY if domain in (DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN) else domain
