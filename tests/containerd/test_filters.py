"""containerd's filter language (pkg/filters), pure."""

import pytest

from dockyard.containerd import filters
from dockyard.errors import InvalidArgument

OBJ = filters.adaptor(
    {"id": "web-1", "image": "docker.io/library/nginx:latest", "runtime.name": "io.containerd.runc.v2"},
    {"app": "web", "a.b": "dotted", "empty": ""})


@pytest.mark.parametrize("expr,expected", [
    ("id==web-1", True),
    ("id==web-2", False),
    ("id!=web-2", True),
    ("id~=^web-", True),
    ("id~=/^WEB/", False),
    ("labels.app", True),
    ("labels.missing", False),
    ("labels.missing!=x", True),          # absent compares as "", as containerd
    ("labels.app==web,id==web-1", True),  # ',' is AND
    ("labels.app==web,id==web-2", False),
    ('labels."a.b"==dotted', True),
    ('image=="docker.io/library/nginx:latest"', True),
    ("runtime.name==io.containerd.runc.v2", True),
    ("labels.empty", True),
    (r'id~=/web\-\d/', True),
])
def test_single_filter(expr, expected):
    assert filters.parse([expr])(OBJ) is expected


def test_several_filters_are_ored_and_none_matches_all():
    assert filters.parse(["id==nope", "labels.app==web"])(OBJ)
    assert not filters.parse(["id==nope", "labels.app==db"])(OBJ)
    assert filters.parse([])(OBJ)
    assert filters.parse([""])(OBJ)


@pytest.mark.parametrize("expr", ["==x", "id==", "id==x,", 'labels."open', "id~=(", "id=x", "a..b"])
def test_malformed_filters_are_invalid_arguments(expr):
    with pytest.raises(InvalidArgument):
        filters.parse([expr])
