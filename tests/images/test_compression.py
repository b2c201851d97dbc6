"""Layer compression: magic sniffing over media types, multi-member/multi-frame streams, corrupt
data as InvalidArgument, and the compressors used for push/import. Pure: no root needed."""

import gzip
import io
import os
import zlib

import pytest
import zstandard

from dockyard.errors import InvalidArgument
from dockyard.images import compression

DATA = b"".join(bytes([i % 251]) * (i % 700) for i in range(4000)) + os.urandom(300_000)


def _read_all(reader, n=65536):
    out = bytearray()
    while True:
        chunk = reader.read(n)
        assert len(chunk) <= n
        if not chunk:
            return bytes(out)
        out += chunk


@pytest.mark.parametrize("head,kind", [
    (b"\x1f\x8b\x08\x00", "gzip"),
    (b"\x28\xb5\x2f\xfd\x00", "zstd"),
    (b"bin/\x00\x00", "none"),
    (b"", "none"),
    (b"\x1f", "none"),
])
def test_detect(head, kind):
    assert compression.detect(head) == kind


@pytest.mark.parametrize("hint", ["", "gzip", "zstd", "none"])
def test_gzip_multi_member_whatever_the_label(hint):
    blob = (gzip.compress(DATA[:1000]) + gzip.compress(DATA[1000:200_000])
            + gzip.compress(DATA[200_000:]))
    assert _read_all(compression.decompressed(io.BytesIO(blob), hint)) == DATA
    assert compression.decompressed(io.BytesIO(blob), hint).read() == DATA


def test_gzip_trailing_zero_padding_is_accepted():
    blob = gzip.compress(DATA) + bytes(4096)
    assert _read_all(compression.decompressed(io.BytesIO(blob))) == DATA


@pytest.mark.parametrize("hint", ["", "gzip", "zstd", "none"])
def test_zstd_multi_frame_whatever_the_label(hint):
    cctx = zstandard.ZstdCompressor()
    blob = cctx.compress(DATA[:7]) + cctx.compress(DATA[7:150_000]) + cctx.compress(DATA[150_000:])
    assert _read_all(compression.decompressed(io.BytesIO(blob), hint), 4096) == DATA


@pytest.mark.parametrize("hint", ["", "gzip", "zstd"])
def test_uncompressed_passes_through_even_when_labelled_compressed(hint):
    assert _read_all(compression.decompressed(io.BytesIO(DATA), hint), 1000) == DATA


def test_small_reads_are_bounded():
    # 64 MiB of zeros in ~64 KiB: a read never returns more than asked.
    blob = gzip.compress(bytes(64 << 20))
    reader = compression.decompressed(io.BytesIO(blob))
    assert reader.read(1000) == bytes(1000)
    assert reader.read(1) == b"\0"


def _corrupt_gzip():
    blob = bytearray(gzip.compress(DATA))
    blob[len(blob) // 2] ^= 0xFF
    return bytes(blob)


def _bad_crc_gzip():
    blob = bytearray(gzip.compress(DATA))
    blob[-8] ^= 0x01   # CRC32 in the trailer
    return bytes(blob)


@pytest.mark.parametrize("blob", [
    pytest.param(_corrupt_gzip(), id="flipped-byte"),
    pytest.param(_bad_crc_gzip(), id="bad-crc"),
    pytest.param(gzip.compress(DATA)[:-20], id="truncated"),
    pytest.param(gzip.compress(DATA)[:15], id="truncated-header"),
    pytest.param(gzip.compress(DATA) + b"junk after the member", id="trailing-junk"),
])
def test_corrupt_gzip_is_invalid_argument(blob):
    with pytest.raises(InvalidArgument, match=r"layer sha256:abc: corrupt gzip data"):
        _read_all(compression.decompressed(io.BytesIO(blob), "gzip", what="layer sha256:abc"))


def test_corrupt_zstd_is_invalid_argument():
    blob = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(DATA))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(InvalidArgument, match="corrupt zstd data"):
        _read_all(compression.decompressed(io.BytesIO(bytes(blob))))


@pytest.mark.parametrize("kind", ["gzip", "zstd", "none"])
def test_compressor_round_trip_leaves_out_open(kind):
    out = io.BytesIO()
    writer = compression.compressor(out, kind, level=1)
    for i in range(0, len(DATA), 100_000):
        writer.write(DATA[i:i + 100_000])
    writer.close()
    assert not out.closed
    blob = out.getvalue()
    assert compression.detect(blob[:4]) == kind
    assert _read_all(compression.decompressed(io.BytesIO(blob))) == DATA


def test_gzip_compressor_is_deterministic():
    def once():
        out = io.BytesIO()
        with compression.compressor(out, "gzip") as w:
            w.write(DATA)
        return out.getvalue()
    first = once()
    assert first == once()
    assert first[4:8] == b"\0\0\0\0"   # mtime 0
    assert zlib.decompress(first, 16 + zlib.MAX_WBITS) == DATA


def test_unknown_compressor_is_invalid_argument():
    with pytest.raises(InvalidArgument, match="unsupported compression"):
        compression.compressor(io.BytesIO(), "bzip2")
