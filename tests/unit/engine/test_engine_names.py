import re

import pytest
from hypothesis import given, strategies as st

from dockyard.engine.names import (ADJECTIVES, NOUNS, candidate_names, match_id_prefix, new_id,
                                   random_name, short, validate_name)
from dockyard.errors import InvalidArgument


def test_word_lists_are_names():
    assert len(ADJECTIVES) >= 40 and len(NOUNS) >= 40
    assert len(set(ADJECTIVES)) == len(ADJECTIVES) and len(set(NOUNS)) == len(NOUNS)
    for word in ADJECTIVES + NOUNS:
        assert re.fullmatch(r"[a-z]+", word)


def test_random_names_are_valid():
    for retry in range(3):
        name = random_name(retry)
        assert validate_name(name) == name
        assert re.fullmatch(r"[a-z]+_[a-z]+\d" if retry else r"[a-z]+_[a-z]+", name)


def test_candidates_end_with_the_short_id():
    id = new_id()
    names = list(candidate_names(id))
    assert len(names) == 7 and names[-1] == id[:12]
    assert all(validate_name(n) for n in names)


@pytest.mark.parametrize("name", ["ab", "/ab", "web-1", "a.b_c-d", "0x", "A9"])
def test_valid_names(name):
    assert validate_name(name) == name.lstrip("/")


@pytest.mark.parametrize("name", ["a", "/a", "", "/", "-ab", "_ab", ".ab", "a b", "a/b", "//ab",
                                  "ab\n", "ab:c", "é1"])
def test_invalid_names(name):
    with pytest.raises(InvalidArgument) as e:
        validate_name(name)
    assert str(e.value) == (f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                            "are allowed")


def test_ids():
    ids = {new_id() for _ in range(50)}
    assert len(ids) == 50
    for id in ids:
        assert re.fullmatch(r"[0-9a-f]{64}", id)
        assert not short(id).isdigit()
    assert short("sha256:" + "ab" * 32) == "ab" * 6
    assert short("abc") == "abc"


def test_match_id_prefix():
    ids = ["abc123" + "0" * 58, "abd456" + "0" * 58, "ffff" + "1" * 60]
    assert match_id_prefix("abc", ids) == ids[0]
    assert match_id_prefix("f", ids) == ids[2]
    assert match_id_prefix(ids[1], ids) == ids[1]
    assert match_id_prefix("0", ids) is None
    assert match_id_prefix("", ids) is None
    assert match_id_prefix("web", ids) is None  # not hex: a name, never an id
    with pytest.raises(InvalidArgument, match="multiple IDs found with provided prefix: ab"):
        match_id_prefix("ab", ids)


def test_match_image_id_prefix():
    ids = ["sha256:" + "ab" * 32, "sha256:" + "cd" * 32]
    assert match_id_prefix("abab", ids) == ids[0]
    assert match_id_prefix("sha256:cdc", ids) == ids[1]


@given(st.text(max_size=70), st.lists(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
                                      max_size=5))
def test_match_id_prefix_is_total(prefix, ids):
    try:
        found = match_id_prefix(prefix, ids)
    except InvalidArgument:
        assert len({i for i in ids if i.startswith(prefix)}) > 1
        return
    assert found is None or (found in ids and found.startswith(prefix.removeprefix("sha256:")))
