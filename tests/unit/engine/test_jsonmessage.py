import json

import pytest

from dockyard.containerd.transfer import progress as p
from dockyard.engine.jsonmessage import (aux_message, error_message, human_size, progress_bar,
                                         progress_message, status_message, stream_message)


@pytest.mark.parametrize("size, text", [
    (0, "0B"), (512, "512B"), (999, "999B"), (1000, "1kB"), (1500, "1.5kB"),
    (2_152_000, "2.152MB"), (2_152_499, "2.152MB"), (1_000_000_000, "1GB"), (123_456_789, "123.5MB"),
])
def test_human_size(size, text):
    assert human_size(size) == text


def test_progress_bar():
    assert progress_bar(0, 0) == ""
    assert progress_bar(2_152_000, 2_152_000) == (
        "[" + "=" * 50 + ">]  2.152MB/2.152MB")
    half = progress_bar(1_000_000, 2_000_000)
    assert half == "[" + "=" * 25 + ">" + " " * 25 + "] " + "     1MB/2MB"
    assert progress_bar(1500, 0) == "   1.5kB"
    assert progress_bar(3000, 2000) == "[" + "=" * 50 + ">] " + "     3kB"


def test_layer_progress():
    msg = progress_message(p.Progress("a3ed95caeb02", p.DOWNLOADING, 1000, 2_152_000))
    assert msg == {"status": "Downloading", "progressDetail": {"current": 1000, "total": 2_152_000},
                   "progress": "[>" + " " * 50 + "]      1kB/2.152MB", "id": "a3ed95caeb02"}
    assert list(msg) == ["status", "progressDetail", "progress", "id"]
    assert progress_message(p.Progress("a3ed95caeb02", p.PULL_COMPLETE)) == {
        "status": "Pull complete", "progressDetail": {}, "id": "a3ed95caeb02"}


def test_image_wide_messages():
    assert progress_message(p.Progress("latest", p.pulling_from("library/busybox"))) == {
        "status": "Pulling from library/busybox", "id": "latest"}
    digest = "sha256:" + "ab" * 32
    assert progress_message(p.Progress("", p.digest_line(digest))) == {
        "status": f"Digest: {digest}"}
    assert progress_message(p.Progress("", p.downloaded_newer("busybox:latest"))) == {
        "status": "Status: Downloaded newer image for busybox:latest"}


def test_other_messages():
    assert error_message("boom") == {"errorDetail": {"message": "boom"}, "error": "boom"}
    assert stream_message("Loaded image: busybox:latest\n") == {
        "stream": "Loaded image: busybox:latest\n"}
    assert aux_message({"ID": "sha256:x"}) == {"aux": {"ID": "sha256:x"}}
    assert status_message("Waiting", "abc") == {"status": "Waiting", "id": "abc"}
    for m in (error_message("x"), stream_message("y"), aux_message([1])):
        json.dumps(m)
