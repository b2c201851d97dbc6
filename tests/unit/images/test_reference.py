import pytest
from hypothesis import assume, given, strategies as st

from dockyard.errors import InvalidArgument
from dockyard.images.reference import Reference, parse, registry_host

D = "sha256:" + "4f" * 32


@pytest.mark.parametrize("text, expected, familiar", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("user/repo", "docker.io/user/repo:latest", "user/repo:latest"),
    ("user/repo/sub:t", "docker.io/user/repo/sub:t", "user/repo/sub:t"),
    ("docker.io/library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
    ("localhost:5000/x:1", "localhost:5000/x:1", "localhost:5000/x:1"),
    ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest", "127.0.0.1:5000/a/b:latest"),
    ("quay.io/coreos/etcd:v3.5.0", "quay.io/coreos/etcd:v3.5.0", "quay.io/coreos/etcd:v3.5.0"),
    ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}", f"busybox@{D}"),
    (f"host:5000/repo@{D}", f"host:5000/repo@{D}", f"host:5000/repo@{D}"),
    (f"busybox:1@{D}", f"docker.io/library/busybox:1@{D}", f"busybox:1@{D}"),
    ("a__b_c-d---e/f.g", "docker.io/a__b_c-d---e/f.g:latest", "a__b_c-d---e/f.g:latest"),
    # a first component with a dot is a domain
    ("my.registry/x", "my.registry/x:latest", "my.registry/x:latest"),
    ("busybox:Tag_1.x-y", "docker.io/library/busybox:Tag_1.x-y", "busybox:Tag_1.x-y"),
    # a bare host:port is Docker's library repo with a tag
    ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
    # an uppercase first component is a domain, as splitDockerDomain decides
    ("Example/repo", "Example/repo:latest", "Example/repo:latest"),
])
def test_normalizes_like_docker(text, expected, familiar):
    ref = parse(text)
    assert str(ref) == expected
    assert ref.familiar() == familiar
    assert parse(expected) == ref


def test_parts():
    ref = parse(f"127.0.0.1:5000/team/app:1.0@{D}")
    assert ref == Reference("127.0.0.1:5000", "team/app", "1.0", D)
    assert ref.name == "127.0.0.1:5000/team/app"
    assert ref.object == D
    assert parse("busybox").object == "latest"


def test_default_tag():
    assert parse("busybox", default_tag=None) == Reference("docker.io", "library/busybox")
    assert parse("busybox", default_tag=None).object == ""
    assert parse("busybox", default_tag="stable").tag == "stable"
    assert parse(f"busybox@{D}").tag == ""


def test_with_tag_and_digest():
    ref = parse("busybox")
    assert str(ref.with_tag("1.36")) == "docker.io/library/busybox:1.36"
    assert str(ref.with_digest(D)) == f"docker.io/library/busybox:latest@{D}"
    assert str(ref.without_object().with_digest(D)) == f"docker.io/library/busybox@{D}"
    with pytest.raises(InvalidArgument):
        ref.with_tag("-bad")
    with pytest.raises(InvalidArgument):
        ref.with_digest("sha256:1234")


def test_uppercase_repository():
    with pytest.raises(InvalidArgument,
                       match=r"^invalid reference format: repository name \(library/FOO\) "
                             r"must be lowercase$"):
        parse("FOO")
    with pytest.raises(InvalidArgument, match=r"repository name \(Repo\) must be lowercase"):
        parse("localhost:5000/Repo:tag")


def test_hex_id_refused_as_name():
    with pytest.raises(InvalidArgument, match="cannot specify 64-byte hexadecimal strings"):
        parse("ab" * 32)
    # as a path component under a user it is a fine name
    assert parse("user/" + "ab" * 32).path == "user/" + "ab" * 32


@pytest.mark.parametrize("text", [
    "", " ", "busybox ", "busy box", "busybox:", "busybox:-x", "busybox:" + "a" * 129,
    ":tag", "/busybox", "busybox/", "a//b", "-a", "a-", "a..b", "a___b", "a.-b", "busybox@",
    "busybox@sha256:abc", f"busybox@md5:{'a' * 32}", f"busybox@{D.upper()}", "busybox@@x",
    f"busybox@{D}@{D}", "host:port/x", "host:/x", "ho_st:5000/x", "-host.com/x", "a:b:c",
    "busybox\n", "busybox\x00", "http://host/x", "x" * 300, "é/x", "localhost:5000/",
])
def test_invalid(text):
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        parse(text)


def test_non_string():
    with pytest.raises(InvalidArgument):
        parse(None)


def test_name_length_limit():
    parse("a/" + "b" * 240)  # docker.io/a/… is 253
    with pytest.raises(InvalidArgument, match="255"):
        parse("a/" + "b" * 250)


def test_registry_host():
    assert registry_host("docker.io") == "registry-1.docker.io"
    assert registry_host("127.0.0.1:5000") == "127.0.0.1:5000"
    assert registry_host(parse("busybox").domain) == "registry-1.docker.io"


# --- properties ---

_alnum = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_sep = st.sampled_from([".", "_", "__", "-", "--"])
_component = st.builds(lambda first, rest: first + "".join(s + a for s, a in rest),
                       _alnum, st.lists(st.tuples(_sep, _alnum), max_size=2))
_path = st.lists(_component, min_size=1, max_size=3).map("/".join)
_label = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
_domain = st.one_of(
    st.builds(lambda a, b, port: f"{a}.{b}{port}", _label, _label,
              st.sampled_from(["", ":5000", ":1"])),
    st.sampled_from(["localhost", "localhost:5000", "127.0.0.1:5000", "[::1]:443"]),
)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())


@given(_domain, _path, _tag | st.just(""), _digest | st.just(""))
def test_fully_qualified_round_trip(domain, path, tag, dig):
    ref = Reference(domain, path, tag, dig)
    text = str(ref)
    parsed = parse(text, default_tag=None)
    if domain.lower() in ("docker.io", "index.docker.io"):
        return
    assert parsed == ref
    assert str(parsed) == text
    assert parse(parsed.familiar(), default_tag=None) == parsed


@given(_path, _tag | st.just(""), _digest | st.just(""))
def test_docker_hub_round_trip(path, tag, dig):
    assume("." not in path.split("/")[0] or "/" not in path)
    ref = parse(path + (":" + tag if tag else "") + ("@" + dig if dig else ""))
    assert ref.domain == "docker.io"
    assert ref.path == path if "/" in path else ref.path == "library/" + path
    assert ref.tag == (tag or ("" if dig else "latest"))
    assert parse(str(ref)) == ref
    assert parse(ref.familiar()) == ref


@given(st.text(max_size=80))
def test_parse_raises_only_invalid_argument(text):
    try:
        ref = parse(text)
    except InvalidArgument:
        return
    assert parse(str(ref)) == ref
