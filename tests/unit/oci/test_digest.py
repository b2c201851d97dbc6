import hashlib

import pytest
from hypothesis import given, strategies as st

from dockyard.errors import InvalidArgument
from dockyard.oci import digest

EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_sha256_of_empty():
    assert digest.sha256(b"") == EMPTY


@pytest.mark.parametrize("d", [EMPTY, "sha512:" + "ab" * 64])
def test_validate_accepts(d):
    assert digest.validate(d) == d


@pytest.mark.parametrize("d", [
    "", "sha256:", "sha256:" + "a" * 63, "sha256:" + "a" * 65, "sha256:" + "A" * 64,
    "sha512:" + "a" * 64, "md5:" + "a" * 32, "sha256" + "a" * 64, "sha256:" + "g" * 64,
    " " + EMPTY, EMPTY + "\n", None, 5, b"sha256:" + b"a" * 64,
])
def test_validate_refuses(d):
    with pytest.raises(InvalidArgument, match="invalid digest"):
        digest.validate(d)


def test_hex_and_short_id():
    assert digest.hex_of(EMPTY) == EMPTY[7:]
    assert digest.short_id(EMPTY) == "e3b0c44298fc"
    with pytest.raises(InvalidArgument):
        digest.short_id("sha256:../../etc")


@given(st.lists(st.binary(max_size=200), max_size=8))
def test_hasher_matches_one_shot(chunks):
    h = digest.Hasher()
    for c in chunks:
        h.update(c)
    whole = b"".join(chunks)
    assert h.digest() == digest.sha256(whole)
    assert h.size == len(whole)


def test_hasher_takes_algorithm_of_expected_digest():
    h = digest.Hasher("sha512:" + "0" * 128)
    h.update(b"abc")
    assert h.digest() == "sha512:" + hashlib.sha512(b"abc").hexdigest()
    copy = h.copy()
    copy.update(b"d")
    assert h.digest() != copy.digest()


@pytest.mark.parametrize("bad", ["md5", "sha1", "sha256:short"])
def test_hasher_refuses_unknown_algorithm(bad):
    with pytest.raises(InvalidArgument):
        digest.Hasher(bad)
