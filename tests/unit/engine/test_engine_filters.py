import json

import pytest
from hypothesis import given, strategies as st

from dockyard.engine.filters import Filters, from_object, match_label, parse
from dockyard.errors import InvalidArgument


def test_map_and_list_forms_agree():
    a = parse('{"label":{"a=b":true,"c":true},"status":{"running":true}}')
    b = parse('{"label":["a=b","c"],"status":["running"]}')
    assert a == b == {"label": ["a=b", "c"], "status": ["running"]}
    assert isinstance(a, Filters) and isinstance(a, dict)


def test_empty_inputs():
    assert parse(None) == {}
    assert parse("") == {}
    assert parse("null") == {}
    assert parse(b'{"label":null}') == {"label": []}
    assert parse("{}") == {}


@pytest.mark.parametrize("text", ["[", "[1]", '"x"', "3", '{"label":"a"}', '{"label":[1]}',
                                  '{"label":{"a":"yes"}}', '{"label":[["a"]]}', "\xff", "[" * 5000])
def test_bad_json_is_invalid_argument(text):
    with pytest.raises(InvalidArgument, match="invalid filter"):
        parse(text)


def test_map_form_keeps_false_values_like_dockerd():
    assert parse('{"label":{"a":false}}').values("label") == ["a"]


def test_list_form_deduplicates():
    assert parse('{"name":["x","y","x"]}').values("name") == ["x", "y"]


def test_validate():
    f = parse('{"label":["a"],"bogus":["1"]}')
    f.validate({"label", "bogus"})
    with pytest.raises(InvalidArgument, match=r"^invalid filter 'bogus'$"):
        f.validate({"label", "status"})


def test_matches():
    f = parse('{"name":["^/web"],"id":["abc"],"status":["exited"]}')
    assert f.match("name", "/web-1") and not f.match("name", "/db")
    assert f.match("other", "anything")  # absent filter matches everything
    assert f.fuzzy_match("id", "abcdef") and not f.fuzzy_match("id", "bcd")
    assert f.exact_match("status", "exited") and not f.exact_match("status", "running")
    # a bad regular expression only matches exactly, and never raises
    assert parse('{"name":["(["]}').match("name", "([")
    assert not parse('{"name":["(["]}').match("name", "x")


@pytest.mark.parametrize("labels, exprs, expected", [
    ({}, [], True),
    (None, ["a"], False),
    ({"a": "1"}, ["a"], True),
    ({"a": "1"}, ["a=1"], True),
    ({"a": "1"}, ["a=2"], False),
    ({"a": "1"}, ["a="], False),
    ({"a": ""}, ["a="], True),
    ({"a": "1", "b": "2"}, ["a", "b=2"], True),
    ({"a": "1"}, ["a", "b"], False),
    ({"a": "1"}, ["a!=1"], False),
    ({"a": "1"}, ["a!=2"], True),
    ({}, ["a!=2"], True),
    ({"a": "x=y"}, ["a=x=y"], True),
])
def test_match_label(labels, exprs, expected):
    assert match_label(labels, exprs) is expected


def test_bool_filters():
    assert parse('{"dangling":["true"]}').get_bool("dangling", False) is True
    assert parse('{"dangling":["0"]}').get_bool("dangling", True) is False
    assert parse("{}").get_bool("dangling", True) is True
    for bad in ('{"dangling":["maybe"]}', '{"dangling":["true","false"]}', '{"dangling":[]}'):
        with pytest.raises(InvalidArgument, match="invalid filter 'dangling"):
            parse(bad).get_bool("dangling", False)
    f = parse('{"is-task":["false"]}')
    assert f.match_bool("is-task", False) and not f.match_bool("is-task", True)
    assert parse("{}").match_bool("is-task", True)


def test_to_json_round_trip():
    f = parse('{"label":["a=b"],"name":["x"]}')
    assert json.loads(f.to_json()) == {"label": {"a=b": True}, "name": {"x": True}}
    assert parse(f.to_json()) == f


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children,
                                                                       max_size=4),
    max_leaves=20)


@given(st.text(max_size=200))
def test_parse_never_raises_but_invalid_argument_text(text):
    try:
        parse(text)
    except InvalidArgument:
        pass


@given(json_values)
def test_parse_never_raises_but_invalid_argument_json(value):
    try:
        f = parse(json.dumps(value))
    except InvalidArgument:
        return
    assert all(isinstance(k, str) and all(isinstance(v, str) for v in vs) for k, vs in f.items())
    # every operation on parsed filters is total too
    for name in list(f) + ["absent"]:
        f.match(name, "/some-name")
        f.fuzzy_match(name, "abc")
        f.match_kv(name, {"a": "b"})
        try:
            f.get_bool(name, False)
        except InvalidArgument:
            pass


@given(st.dictionaries(st.text(max_size=8), st.lists(st.text(max_size=8), max_size=4), max_size=5))
def test_list_and_map_forms_round_trip(d):
    f = from_object(d)
    assert parse(json.dumps(d)) == f
    assert parse(f.to_json()) == f
