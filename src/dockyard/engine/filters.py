"""Docker's `filters` query parameter: a JSON object from filter name to values, in either of
the two forms dockerd accepts (moby `api/types/filters` FromJSON) —
the map form the docker CLI sends, `{"label": {"a=b": true}}`, and the older list form docker-py
and API ≤1.21 clients send, `{"label": ["a=b"]}`.

`Filters` is that mapping as `{name: [values]}` plus the matching rules dockerd uses: exact,
prefix ("fuzzy"), regular expression, label expressions, and booleans. Bad input is always
InvalidArgument (a 400), never anything else. `before`/`since`/`until` are the callers' own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from dockyard.errors import InvalidArgument


class Filters(dict[str, list[str]]):
    """Filter name → its values (in the order given, without duplicates). A name may be present
    with no values (`{"label": {}}`): it then filters nothing, as in dockerd."""

    def values(self, name: str) -> list[str]:
        return list(self.get(name, ()))

    def contains(self, name: str) -> bool:
        return name in self

    def validate(self, allowed: Iterable[str]) -> None:
        """InvalidArgument "invalid filter 'x'" for the first name not in `allowed`."""
        allowed = set(allowed)
        for name in sorted(self):
            if name not in allowed:
                raise InvalidArgument(f"invalid filter '{name}'")

    def exact_match(self, name: str, source: str) -> bool:
        """True when the filter is absent or empty, or one value equals `source`."""
        values = self.get(name)
        return not values or source in values

    def fuzzy_match(self, name: str, source: str) -> bool:
        """True when the filter is absent or empty, or `source` starts with one value (ids)."""
        values = self.get(name)
        return not values or any(source.startswith(v) for v in values)

    def match(self, name: str, source: str) -> bool:
        """True when the filter is absent or empty, or one value equals `source` or is a regular
        expression found in it (dockerd's `name` filter: "foo" matches "/my-foo-1"). Values
        that are not valid expressions only match exactly."""
        values = self.get(name)
        if not values or source in values:
            return True
        for value in values:
            try:
                if re.search(value, source):
                    return True
            except (re.error, RecursionError, OverflowError):
                continue
        return False

    def match_kv(self, name: str, labels: Mapping[str, str] | None) -> bool:
        """`match_label` of this filter's values (for "label" and friends)."""
        return match_label(labels, self.get(name, ()))

    def get_bool(self, name: str, default: bool) -> bool:
        """A boolean filter ("dangling", "is-task"): "1"/"true" or "0"/"false"; `default` when
        absent; InvalidArgument when empty, unknown or contradictory."""
        if name not in self:
            return default
        values = self[name]
        is_true = "1" in values or "true" in values
        is_false = "0" in values or "false" in values
        if is_true == is_false:
            raise InvalidArgument(f"invalid filter '{name}={','.join(values)}'")
        return is_true

    def match_bool(self, name: str, value: bool) -> bool:
        """True when the filter is absent or says `value`."""
        return name not in self or self.get_bool(name, value) == value

    def to_json(self) -> str:
        """The map form, as the docker CLI sends it."""
        return json.dumps({name: {v: True for v in values} for name, values in self.items()})


def parse(text: str | bytes | None) -> Filters:
    """The filters of a `filters` query value; empty for None or ""."""
    if text is None:
        return Filters()
    if isinstance(text, bytes):
        try:
            text = text.decode()
        except UnicodeDecodeError:
            raise InvalidArgument("invalid filter: not UTF-8") from None
    if not text.strip():
        return Filters()
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise InvalidArgument(f"invalid filter: {e}") from None
    return from_object(raw)


def from_object(raw: object) -> Filters:
    """Filters from decoded JSON (either form); `null` is no filters, as in Go."""
    if raw is None:
        return Filters()
    if not isinstance(raw, dict):
        raise InvalidArgument("invalid filter: expected a JSON object of filter names")
    filters = Filters()
    for name, values in raw.items():
        if values is None:
            filters[name] = []
        elif isinstance(values, dict):
            if not all(isinstance(v, bool) for v in values.values()):
                raise InvalidArgument(f"invalid filter: the values of '{name}' must be true")
            # dockerd keeps every key of the map form, whatever its boolean.
            filters[name] = list(values)
        elif isinstance(values, list):
            if not all(isinstance(v, str) for v in values):
                raise InvalidArgument(f"invalid filter: the values of '{name}' must be strings")
            filters[name] = list(dict.fromkeys(values))
        else:
            raise InvalidArgument(
                f"invalid filter: '{name}' must map to a list or an object of values")
    return filters


def match_label(labels: Mapping[str, str] | None, exprs: Iterable[str]) -> bool:
    """Whether `labels` satisfy every expression: "key" (present), "key=value" (present with
    that value), "key!=value" (absent, or present with another value). No expressions match
    everything, as in dockerd's MatchKVList."""
    labels = labels or {}
    for expr in exprs:
        key, eq, value = expr.partition("=")
        if eq and key.endswith("!"):
            if labels.get(key[:-1]) == value:
                return False
        elif key not in labels or (eq and labels[key] != value):
            return False
    return True
