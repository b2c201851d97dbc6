"""A small JSON-Schema (draft-04) validator for the OCI schemas shipped beside this module.

Only the keywords the OCI runtime and image schemas use are implemented: $ref, type, enum,
minimum, maximum, pattern, format ("uri", loosely), minItems, items, properties,
patternProperties, additionalProperties, required, allOf, anyOf, oneOf. Everything else
(id, $schema, description, definitions, …) is ignored, as draft-04 allows.

dockyard-runc validates config.json on every container start, in a fresh process, so nothing
is prepared ahead: a schema file is read when a $ref first reaches it, and a schema node's checks
are worked out when a value first meets it.
"""

import functools
import json
import os
import re

from dockyard.errors import InvalidArgument

SCHEMA_ROOT = os.path.join(os.path.dirname(__file__), "schemas")
RUNTIME_SCHEMA_DIR = os.path.join(SCHEMA_ROOT, "runtime")
IMAGE_SCHEMA_DIR = os.path.join(SCHEMA_ROOT, "image")

# A link in a JSON path: (parent link, key or index); None is the document root.
JsonPath = tuple | None

_JSON_TYPE_NAMES = {
    dict: "object", list: "array", str: "string", bool: "boolean",
    int: "integer", float: "number", type(None): "null",
}

# Draft-04 "integer" is a number without a fraction; bool is not a number although Python
# says it is an int.
_TYPE_CHECKS = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "null": lambda v: v is None,
}

# Compiled on first use (through _regex): compiling at import would cost every runtime start.
_URI = r"^[A-Za-z][A-Za-z0-9+.-]*:\S*$"
_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _type_name(value) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _show(value) -> str:
    """A short, one-line rendering of an offending value."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@functools.cache
def _regex(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def format_path(path: JsonPath) -> str:
    parts = []
    while path is not None:
        path, key = path
        if isinstance(key, int):
            parts.append(f"[{key}]")
        elif _regex(_IDENTIFIER).match(key):
            parts.append(f".{key}")
        else:
            parts.append(f"[{json.dumps(key)}]")
    return "".join(reversed(parts)).lstrip(".")


def _equal(a, b) -> bool:
    """JSON equality: unlike Python's ==, true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_equal, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


@functools.cache
def _load(path: str) -> dict | None:
    """A schema file, parsed once per process; None if it is not shipped."""
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


class Validator:
    """Validates instances against `entry` (a file name in `schema_dir`) and the files it refs.

    Relative file refs ("defs.json#/definitions/uint32") resolve against the referring file,
    within the same directory tree; `id` keywords are ignored.
    """

    def __init__(self, schema_dir: str, entry: str):
        self._dir = schema_dir
        self._entry = entry
        self._refs: dict[tuple[str, str], tuple[dict, str]] = {}
        # id(schema node) -> (node after following $refs, its file, [(keyword check, arg)]).
        # Nodes live as long as the process-wide file cache, so their ids stay unique.
        self._plans: dict[int, tuple[dict, str, list]] = {}

    def errors(self, instance) -> list[str]:
        """Every violation, one line each: "<json path>: <problem>" (no path at the root)."""
        found: list[tuple[JsonPath, str]] = []
        schema = self._file(self._entry)
        if schema is None:
            raise FileNotFoundError(os.path.join(self._dir, self._entry))
        self._check(schema, self._entry, instance, None, found)
        return [f"{format_path(p)}: {m}" if p is not None else m for p, m in found]

    def validate(self, instance, document: str) -> None:
        """Raise InvalidArgument naming `document` and the first violation."""
        errors = self.errors(instance)
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise InvalidArgument(f"{document}: {errors[0]}{more}")

    def _file(self, name: str) -> dict | None:
        return _load(os.path.join(self._dir, name))

    def _resolve(self, ref: str, base: str) -> tuple[dict, str]:
        key = (base, ref)
        hit = self._refs.get(key)
        if hit is None:
            name, _, pointer = ref.partition("#")
            name = os.path.normpath(os.path.join(os.path.dirname(base), name)) if name else base
            node = self._file(name)
            if node is None:
                # The runtime schema refs platform files (config-windows.json, …) that a Linux
                # runtime does not ship; like runc, leave those sections unchecked.
                node, pointer = {}, ""
            for token in filter(None, pointer.split("/")):
                token = token.replace("~1", "/").replace("~0", "~")
                try:
                    node = node[int(token) if isinstance(node, list) else token]
                except (KeyError, IndexError, ValueError) as e:
                    raise LookupError(f"{base}: unresolvable $ref {ref!r}") from e
            hit = self._refs[key] = (node, name)
        return hit

    def _check(self, schema: dict, base: str, value, path: JsonPath, out: list) -> None:
        plan = self._plans.get(id(schema))
        if plan is None:
            plan = self._plan(schema, base)
        schema, base, steps = plan
        for check, arg in steps:
            check(self, arg, schema, base, value, path, out)

    def _plan(self, schema: dict, base: str) -> tuple[dict, str, list]:
        """The keyword checks of a schema node, worked out on first use: a large config meets
        the same small schemas (an array of strings, a uint32) hundreds of times."""
        node, node_base = schema, base
        while "$ref" in node:
            # Draft-04: a $ref replaces its whole object; sibling keywords are ignored.
            node, node_base = self._resolve(node["$ref"], node_base)
        steps = []
        for keyword, arg in node.items():
            check = _KEYWORDS.get(keyword)
            if keyword == "type":
                names = (arg,) if isinstance(arg, str) else tuple(arg)
                arg = (" or ".join(names), tuple(_TYPE_CHECKS[n] for n in names))
            if check is not None:
                steps.append((check, arg))
        plan = self._plans[id(schema)] = (node, node_base, steps)
        return plan

    def _alternatives(self, branches, base, value, path, out, exactly_one: bool) -> None:
        """anyOf / oneOf; on failure, report the branch the value was most likely meant for."""
        failures = []
        matched = 0
        for branch in branches:
            errs: list = []
            self._check(branch, base, value, path, errs)
            if errs:
                failures.append((branch, errs))
            else:
                matched += 1
        if matched > 1 and exactly_one:
            out.append((path, f"matches {matched} of the oneOf alternatives, expected exactly 1"))
        if matched:
            return
        # Branches that want another type are noise; if exactly one wants this type, its
        # errors are the useful ones.
        typed = [errs for branch, errs in failures if self._accepts_type(branch, base, value)]
        if len(typed) == 1 or len(failures) == 1:
            out.extend(typed[0] if typed else failures[0][1])
        elif not typed:
            wanted = []
            for branch, _ in failures:
                for name in self._types(branch, base):
                    if name not in wanted:
                        wanted.append(name)
            if wanted:
                out.append((path, f"expected {' or '.join(wanted)}, got {_type_name(value)}"))
            else:
                out.append((path, "does not match any of the allowed forms"))
        else:
            out.extend(max(typed, key=lambda errs: _depth(errs[0][0])))

    def _types(self, schema: dict, base: str) -> list[str]:
        node = (self._plans.get(id(schema)) or self._plan(schema, base))[0]
        declared = node.get("type", [])
        return [declared] if isinstance(declared, str) else declared

    def _accepts_type(self, schema: dict, base: str, value) -> bool:
        names = self._types(schema, base)
        return not names or any(_TYPE_CHECKS[n](value) for n in names)


def _depth(path: JsonPath) -> int:
    depth = 0
    while path is not None:
        path = path[0]
        depth += 1
    return depth


def _type(v, arg, schema, base, value, path, out):
    expected, checks = arg  # prepared by Validator._plan
    for check in checks:
        if check(value):
            return
    out.append((path, f"expected {expected}, got {_type_name(value)}"))


def _enum(v, arg, schema, base, value, path, out):
    found = value in arg if isinstance(value, str) else any(_equal(value, e) for e in arg)
    if not found:
        out.append((path, f"{_show(value)} is not one of {arg!r}"))


def _minimum(v, arg, schema, base, value, path, out):
    if _TYPE_CHECKS["number"](value) and value < arg:
        out.append((path, f"{value} is less than the minimum of {arg}"))


def _maximum(v, arg, schema, base, value, path, out):
    if _TYPE_CHECKS["number"](value) and value > arg:
        out.append((path, f"{value} is greater than the maximum of {arg}"))


def _pattern(v, arg, schema, base, value, path, out):
    if isinstance(value, str) and not _regex(arg).search(value):
        out.append((path, f"{_show(value)} does not match {arg!r}"))


def _format(v, arg, schema, base, value, path, out):
    if arg == "uri" and isinstance(value, str) and not _regex(_URI).match(value):
        out.append((path, f"{_show(value)} is not a URI"))


def _min_items(v, arg, schema, base, value, path, out):
    if isinstance(value, list) and len(value) < arg:
        out.append((path, f"expected at least {arg} items, got {len(value)}"))


def _items(v, arg, schema, base, value, path, out):
    if isinstance(value, list):
        for i, item in enumerate(value):
            v._check(arg, base, item, (path, i), out)


def _properties(v, arg, schema, base, value, path, out):
    if isinstance(value, dict):
        for key, sub in arg.items():
            if key in value:
                v._check(sub, base, value[key], (path, key), out)


def _pattern_properties(v, arg, schema, base, value, path, out):
    if isinstance(value, dict):
        for pattern, sub in arg.items():
            regex = _regex(pattern)
            for key, item in value.items():
                if regex.search(key):
                    v._check(sub, base, item, (path, key), out)


def _additional_properties(v, arg, schema, base, value, path, out):
    if not isinstance(value, dict) or arg is True:
        return
    known = schema.get("properties", {})
    patterns = [_regex(p) for p in schema.get("patternProperties", ())]
    for key, item in value.items():
        if key in known or any(p.search(key) for p in patterns):
            continue
        if arg is False:
            out.append((path, f"unexpected property {key!r}"))
        else:
            v._check(arg, base, item, (path, key), out)


def _required(v, arg, schema, base, value, path, out):
    if isinstance(value, dict):
        for key in arg:
            if key not in value:
                out.append((path, f"missing required property {key!r}"))


def _all_of(v, arg, schema, base, value, path, out):
    for branch in arg:
        v._check(branch, base, value, path, out)


def _any_of(v, arg, schema, base, value, path, out):
    v._alternatives(arg, base, value, path, out, exactly_one=False)


def _one_of(v, arg, schema, base, value, path, out):
    v._alternatives(arg, base, value, path, out, exactly_one=True)


_KEYWORDS = {
    "type": _type,
    "enum": _enum,
    "minimum": _minimum,
    "maximum": _maximum,
    "pattern": _pattern,
    "format": _format,
    "minItems": _min_items,
    "items": _items,
    "properties": _properties,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "required": _required,
    "allOf": _all_of,
    "anyOf": _any_of,
    "oneOf": _one_of,
}


@functools.cache
def _runtime_config_validator() -> Validator:
    return Validator(RUNTIME_SCHEMA_DIR, "config-schema.json")


def validate_runtime_config(config: dict) -> None:
    """Check a bundle's config.json against the runtime-spec schema; raise InvalidArgument."""
    _runtime_config_validator().validate(config, "config.json")
