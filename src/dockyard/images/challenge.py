"""`WWW-Authenticate` challenges (RFC 7235 §2.1, §4.1), as registries send them to say how to
authenticate: `Bearer realm="https://auth.example/token",service="registry",scope="…"` or
`Basic realm="…"` (distribution docs/spec/auth/token.md).

    WWW-Authenticate = 1#challenge
    challenge  = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
    auth-param = token BWS "=" BWS ( token / quoted-string )

Several challenges may share one header, separated by commas like the parameters: a token not
followed by "=" starts the next challenge. Pure: no I/O; anything malformed is InvalidArgument."""

from dataclasses import dataclass, field
from typing import Iterable

from dockyard.errors import InvalidArgument

# RFC 7230 §3.2.6 tchar
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# RFC 7235 §2.1 token68 (without its trailing "=" padding)
_T68CHAR = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HEADER_MAX = 16 << 10


@dataclass(frozen=True)
class Challenge:
    """One challenge: its scheme lower-cased ("bearer", "basic"), its parameters with names
    lower-cased (they are case-insensitive), and a token68 if the scheme used one."""
    scheme: str
    params: dict = field(default_factory=dict)
    token68: str = ""


class _Scanner:
    def __init__(self, text: str):
        self.s, self.i = text, 0

    def at_end(self) -> bool:
        return self.i >= len(self.s)

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip_ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def take(self, chars: frozenset) -> str:
        start = self.i
        while self.i < len(self.s) and self.s[self.i] in chars:
            self.i += 1
        return self.s[start:self.i]

    def quoted(self) -> str:
        """RFC 7230 §3.2.6 quoted-string, at an opening quote."""
        self.i += 1
        out = []
        while self.i < len(self.s):
            c = self.s[self.i]
            self.i += 1
            if c == '"':
                return "".join(out)
            if c == "\\":
                if self.i >= len(self.s):
                    break
                c = self.s[self.i]
                self.i += 1
            out.append(c)
        raise InvalidArgument("invalid WWW-Authenticate header: unterminated quoted string")

    def fail(self, why: str) -> InvalidArgument:
        return InvalidArgument(f"invalid WWW-Authenticate header: {why} at offset {self.i}")


def parse(header: str) -> list[Challenge]:
    """All challenges in a `WWW-Authenticate` value, in order. An empty value has none."""
    if not isinstance(header, str):
        raise InvalidArgument("invalid WWW-Authenticate header: not text")
    if len(header) > _HEADER_MAX:
        raise InvalidArgument(f"invalid WWW-Authenticate header: longer than {_HEADER_MAX} bytes")
    sc = _Scanner(header)
    challenges: list[Challenge] = []
    while True:
        # empty list elements (",,") are allowed by RFC 7230 §7
        while True:
            sc.skip_ws()
            if sc.peek() != ",":
                break
            sc.i += 1
        if sc.at_end():
            return challenges
        scheme = sc.take(_TCHAR)
        if not scheme:
            raise sc.fail(f"expected an auth scheme, found {sc.peek()!r}")
        params: dict[str, str] = {}
        token68 = ""
        at_next_scheme = False
        had_space = sc.peek() in " \t"
        sc.skip_ws()
        if had_space and not sc.at_end() and sc.peek() != ",":
            # token68 or the first auth-param
            start = sc.i
            word = sc.take(_T68CHAR)
            pad = sc.take(frozenset("="))
            sc.skip_ws()
            if word and pad and (sc.at_end() or sc.peek() == ","):
                token68 = word + pad
            elif word and not pad and (sc.at_end() or sc.peek() == ","):
                token68 = word
            else:
                sc.i = start
                token68 = ""
                at_next_scheme = _params(sc, params)
        challenges.append(Challenge(scheme.lower(), params, token68))
        sc.skip_ws()
        if not at_next_scheme and not sc.at_end() and sc.peek() != ",":
            raise sc.fail(f"unexpected {sc.peek()!r}")


def _params(sc: _Scanner, params: dict[str, str]) -> bool:
    """auth-params separated by commas, up to the next challenge's scheme (returns True, the
    scanner at that scheme) or the end (returns False)."""
    while True:
        sc.skip_ws()
        name_start = sc.i
        name = sc.take(_TCHAR)
        if not name:
            raise sc.fail(f"expected a parameter name, found {sc.peek()!r}")
        sc.skip_ws()
        if sc.peek() != "=":
            if params:
                # a token with no "=" after a comma: the next challenge's scheme
                sc.i = name_start
                return True
            raise sc.fail(f"expected '=' after {name[:40]!r}")
        sc.i += 1
        sc.skip_ws()
        if sc.peek() == '"':
            value = sc.quoted()
        else:
            value = sc.take(_TCHAR)
            if not value:
                raise sc.fail(f"expected a value for {name[:40]!r}")
        params.setdefault(name.lower(), value)  # the first occurrence wins
        sc.skip_ws()
        if sc.at_end():
            return False
        if sc.peek() != ",":
            raise sc.fail(f"unexpected {sc.peek()!r}")
        # skip the comma(s), then see whether a parameter or a new challenge follows
        while sc.peek() in (",", " ", "\t") and not sc.at_end():
            sc.i += 1
        if sc.at_end():
            return False
        mark = sc.i
        sc.take(_TCHAR)
        sc.skip_ws()
        is_param = sc.peek() == "="
        sc.i = mark
        if not is_param:
            return True


def scope_for(repo: str, actions: str | Iterable[str]) -> str:
    """A token scope (token.md "Requesting a Token"): "repository:<repo>:pull,push"."""
    if not isinstance(actions, str):
        actions = ",".join(actions)
    return f"repository:{repo}:{actions}"
