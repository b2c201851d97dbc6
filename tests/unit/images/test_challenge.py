import pytest
from hypothesis import given, strategies as st

from dockyard.errors import InvalidArgument
from dockyard.images.challenge import Challenge, parse, scope_for


def test_bearer_as_docker_hub_sends_it():
    h = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
         'scope="repository:library/busybox:pull"')
    assert parse(h) == [Challenge("bearer", {
        "realm": "https://auth.docker.io/token", "service": "registry.docker.io",
        "scope": "repository:library/busybox:pull"})]


def test_scheme_and_param_names_are_case_insensitive():
    (c,) = parse('BASIC Realm="Registry Realm"')
    assert c.scheme == "basic"
    assert c.params == {"realm": "Registry Realm"}


def test_quoted_string_with_escapes_and_commas():
    (c,) = parse(r'Bearer realm="a \"quoted\", realm", scope="repository:x:pull,push"')
    assert c.params == {"realm": 'a "quoted", realm', "scope": "repository:x:pull,push"}


def test_several_challenges_in_one_header():
    # RFC 7235 §4.1's example
    h = 'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"'
    assert parse(h) == [
        Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
        Challenge("basic", {"realm": "simple"}),
    ]


def test_scheme_without_params_then_another():
    assert parse("Basic, Bearer realm=x") == [Challenge("basic"),
                                              Challenge("bearer", {"realm": "x"})]


def test_token68_tolerated():
    assert parse("Negotiate YIIB3gYJKoZIhvcSAQICAQBuggHNMIIByaADAgEFoQMCAQ6i==, Basic realm=r") == [
        Challenge("negotiate", {}, "YIIB3gYJKoZIhvcSAQICAQBuggHNMIIByaADAgEFoQMCAQ6i=="),
        Challenge("basic", {"realm": "r"}),
    ]


def test_whitespace_and_empty_elements():
    assert parse('  Bearer   realm = "r" ,, service=s ,  ') == [
        Challenge("bearer", {"realm": "r", "service": "s"})]


def test_empty_header_has_no_challenges():
    assert parse("") == []
    assert parse(" , ") == []


def test_first_duplicate_param_wins():
    (c,) = parse('Bearer realm="first", realm="second"')
    assert c.params["realm"] == "first"


@pytest.mark.parametrize("h", [
    '=x', 'Bearer realm="unterminated', 'Bearer realm="x\\', 'Bearer realm=x y',
    'Bearer a b', 'Bearer realm=, service=x', '"Bearer"', 'Bearer realm="x"junk',
])
def test_malformed(h):
    with pytest.raises(InvalidArgument, match="invalid WWW-Authenticate header"):
        parse(h)


def test_oversized_header_refused():
    with pytest.raises(InvalidArgument, match="longer than"):
        parse("Bearer realm=" + "x" * 20000)


@given(st.text(alphabet=st.sampled_from(list('Bb aeR=,"\\\t=x-/+.') + ["é", "\x00"]),
               max_size=60) | st.text(max_size=60))
def test_parse_raises_only_invalid_argument(h):
    try:
        result = parse(h)
    except InvalidArgument:
        return
    assert all(isinstance(c, Challenge) and c.scheme == c.scheme.lower() for c in result)


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=10)
_value = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20)


@given(st.lists(st.tuples(_token, st.dictionaries(_token, _value, max_size=4)),
                min_size=1, max_size=4))
def test_round_trip_of_formatted_challenges(challenges):
    def q(v):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    header = ", ".join(
        (scheme + " " + ", ".join(f"{k}={q(v)}" for k, v in params.items())).rstrip()
        for scheme, params in challenges)
    assert parse(header) == [Challenge(s, p) for s, p in challenges]


def test_scope_for():
    assert scope_for("library/busybox", ["pull", "push"]) == "repository:library/busybox:pull,push"
    assert scope_for("x/y", "pull") == "repository:x/y:pull"
