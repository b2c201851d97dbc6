"""containerd's list-filter language (`pkg/filters`), pure.

    filter    := selector [ op value ] ( ',' selector [ op value ] )*     (',' is AND)
    selector  := field ( '.' field )*        field := [A-Za-z0-9_]+ | "quoted"
    op        := '==' | '!=' | '~='          value := "quoted" | /regex/ | bare text up to ','

A selector alone tests presence. Several filter strings given to one List are ORed; none matches
everything. An object is seen through an adaptor: `field(path) -> str | None`.
"""

import re
from typing import Callable, Iterable

from dockyard.errors import InvalidArgument

Adaptor = Callable[[list[str]], "str | None"]
Predicate = Callable[[Adaptor], bool]

_FIELD = re.compile(r"[A-Za-z0-9_]+")


class _Scanner:
    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def peek(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def error(self, why: str) -> InvalidArgument:
        return InvalidArgument(f"invalid filter {self.text!r} at {self.pos}: {why}")

    def quoted(self, close: str) -> str:
        self.pos += 1
        out = []
        while not self.done():
            c = self.text[self.pos]
            if c == "\\" and self.pos + 1 < len(self.text):
                nxt = self.text[self.pos + 1]
                # Inside /regex/ keep escapes for the regex engine, except an escaped '/'.
                out.append(nxt if close == '"' or nxt == "/" else c + nxt)
                self.pos += 2
                continue
            if c == close:
                self.pos += 1
                return "".join(out)
            out.append(c)
            self.pos += 1
        raise self.error("unterminated quote")

    def field(self) -> str:
        if self.peek('"'):
            return self.quoted('"')
        m = _FIELD.match(self.text, self.pos)
        if not m:
            raise self.error("expected a field name")
        self.pos = m.end()
        return m.group()

    def value(self) -> str:
        if self.peek('"'):
            return self.quoted('"')
        if self.peek("/"):
            return self.quoted("/")
        end = self.text.find(",", self.pos)
        end = len(self.text) if end < 0 else end
        value, self.pos = self.text[self.pos:end], end
        if not value:
            raise self.error("expected a value")
        return value


def _parse_one(text: str) -> Predicate:
    scan = _Scanner(text.strip())
    terms = []
    while True:
        path = [scan.field()]
        while scan.peek("."):
            scan.pos += 1
            path.append(scan.field())
        op = value = None
        for candidate in ("==", "!=", "~="):
            if scan.peek(candidate):
                op = candidate
                scan.pos += 2
                value = scan.value()
                break
        terms.append(_term(scan, path, op, value))
        if scan.done():
            break
        if not scan.peek(","):
            raise scan.error("expected ',' or an operator")
        scan.pos += 1
    return lambda adaptor: all(t(adaptor) for t in terms)


def _term(scan: _Scanner, path: list[str], op: str | None, value: str | None) -> Predicate:
    if op is None:
        return lambda a: a(path) is not None
    if op == "==":
        return lambda a: a(path) == value
    if op == "!=":
        return lambda a: (a(path) or "") != value  # absent compares as "", as containerd
    try:
        rx = re.compile(value)
    except re.error as e:
        raise scan.error(f"bad regular expression: {e}") from None
    return lambda a: rx.search(a(path) or "") is not None


def parse(filters: Iterable[str]) -> Predicate:
    """Compile filter strings (ORed) into one predicate over an adaptor."""
    alternatives = [_parse_one(f) for f in filters if f.strip()]
    if not alternatives:
        return lambda adaptor: True
    return lambda adaptor: any(p(adaptor) for p in alternatives)


def adaptor(fields: dict[str, str | None], labels: dict[str, str]) -> Adaptor:
    """The usual shape: top-level fields by name (dotted names like `runtime.name` allowed) and
    `labels.<key>` (a key with dots is written `labels."a.b"`)."""
    def get(path: list[str]) -> str | None:
        if path[0] == "labels" and len(path) > 1:
            return labels.get(".".join(path[1:]))
        return fields.get(".".join(path))
    return get
