"""parse_user_spec: "user[:group]" resolved against the container's passwd/group text."""

import re

import pytest

from dockyard.errors import InvalidArgument
from dockyard.linux.user import parse_user_spec

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment:x:5:5
alice:x:1000:1000:Alice:/home/alice:/bin/sh
1001:x:1002:1002::/home/numeric:/bin/sh
bob:x:1001:100
"""

GROUP = """\
root:x:0:
daemon:x:1:alice
users:x:100:alice,bob
alice:x:1000:
staff:x:50:bob,,alice
1001:x:2001:
audio:x:29:carol
"""


@pytest.mark.parametrize("spec, expected", [
    ("root", (0, 0, [])),
    ("0", (0, 0, [])),
    ("alice", (1000, 1000, [1, 100, 50])),
    ("1000", (1000, 1000, [1, 100, 50])),  # a number still finds the entry for its groups
    ("bob", (1001, 100, [100, 50])),
    ("alice:users", (1000, 100, [])),  # an explicit group replaces the supplementary ones
    ("alice:29", (1000, 29, [])),
    ("4242", (4242, 0, [])),  # numeric uid not in passwd: runc gives gid 0
    ("4242:4243", (4242, 4243, [])),
    ("1001", (1001, 100, [100, 50])),  # a number is a uid, never the user named "1001"
    ("daemon:1001", (1, 1001, [])),  # likewise for groups: gid 1001, not group "1001"
])
def test_resolves(spec, expected):
    assert parse_user_spec(spec, PASSWD, GROUP) == expected


@pytest.mark.parametrize("spec, message", [
    ("nobody", "unable to find user nobody"),
    ("alice:wheel", "unable to find group wheel"),
    ("", "invalid user spec"),
    (":0", "invalid user spec"),
    ("alice:", "invalid user spec"),
    ("4294967295", "out of range"),  # (uid_t)-1
    ("0:99999999999", "out of range"),
    ("-1", "unable to find user -1"),  # not a number, so a name, which nobody has
    (" 0", "unable to find user  0"),
    ("+1", "unable to find user +1"),
])
def test_rejects(spec, message):
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        parse_user_spec(spec, PASSWD, GROUP)


def test_empty_files_allow_numbers_only():
    assert parse_user_spec("33:44", "", "") == (33, 44, [])
    with pytest.raises(InvalidArgument):
        parse_user_spec("root", "", "")


def test_hostile_passwd_lines_are_skipped_not_misread():
    passwd = "\n".join([
        "evil",                                 # one field
        "evil:x",                               # too short
        "evil:x:abc:0:::",                      # non-numeric uid must not become 0
        "evil:x:0x10:0",                        # not decimal
        "evil:x: 7:0",                          # whitespace
        "evil:x:1_0:0",                         # Python int() would take this
        "evil:x:99999999999:0",                 # beyond uid_t
        "evil:x:5:-1",                          # bad gid
        ":x:0:0:nameless",                      # empty name
        "long:x:77:77:" + "g" * 1_000_000 + ":/:/bin/sh",
        "\0nul:x:3:3",
        "evil:x:12:12",                         # the first well-formed evil wins
        "evil:x:13:13",
    ])
    assert parse_user_spec("evil", passwd, "") == (12, 12, [])
    assert parse_user_spec("long", passwd, "") == (77, 77, [])
    assert parse_user_spec("\0nul", passwd, "") == (3, 3, [])
    with pytest.raises(InvalidArgument):
        parse_user_spec("", passwd, "")


def test_hostile_group_lines_are_skipped():
    group = "\n".join([
        "wheel",
        "wheel:x:abc:alice",
        "wheel:x:99999999999:alice",
        "big:x:7:" + ",".join(f"u{i}" for i in range(100_000)) + ",alice",
        "wheel:x:10",                           # no member field: valid, nobody in it
        "wheel:x:11:alice",
    ])
    assert parse_user_spec("alice:wheel", PASSWD, group) == (1000, 10, [])
    assert parse_user_spec("alice", PASSWD, group) == (1000, 1000, [7, 11])


def test_crlf_and_trailing_blank_lines():
    assert parse_user_spec("alice", "alice:x:5:6:::\r\n\r\n", "") == (5, 6, [])


def test_only_newline_ends_a_line():
    passwd = "mallory:x:1000:1000:gecos\x1cfake:x:0:0\u2028fake2:x:0:0:/:/bin/sh\n"
    assert parse_user_spec("mallory", passwd, "") == (1000, 1000, [])
    for name in ("fake", "fake2"):
        with pytest.raises(InvalidArgument):
            parse_user_spec(name, passwd, "")
