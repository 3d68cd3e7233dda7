"""``Compressed``: large values compressed, small and incompressible ones left alone,
decompression bounded, foreign or damaged bytes refused; through a real Redis layer, batch
reads included, and readable by caches without compression."""

from __future__ import annotations

import os
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multilayercache import Compressed, MsgpackSerializer, RedisLayer, SignedPickleSerializer
from multilayercache.core.errors import UntrustedDataError
from multilayercache.serializers.base import MSGPACK_TAG, ZLIB_TAG, ZSTD_TAG

ALGORITHMS = ["zlib", "zstd"]
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=8) | st.dictionaries(st.text(max_size=8), children, max_size=8)
    ),
    max_leaves=40,
)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=100, deadline=None)
@given(value=VALUES, threshold=st.integers(0, 200))
def test_every_value_comes_back(algorithm: str, value: Any, threshold: int) -> None:
    serializer = Compressed(threshold=threshold, algorithm=algorithm)
    assert serializer.loads(serializer.dumps(value)) == value


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_only_large_values_that_shrink_are_compressed(algorithm: str) -> None:
    serializer = Compressed(threshold=1024, algorithm=algorithm)
    tag = ZLIB_TAG if algorithm == "zlib" else ZSTD_TAG
    small, large, random_bytes = "a" * 100, "a" * 10_000, os.urandom(10_000)
    assert serializer.dumps(small) == MsgpackSerializer().dumps(small)  # as it was
    assert serializer.dumps(large)[:1] == tag and len(serializer.dumps(large)) < 200
    assert serializer.dumps(random_bytes)[:1] == MSGPACK_TAG  # does not shrink: left alone


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_decompression_bomb_is_refused_before_it_expands(algorithm: str) -> None:
    writer = Compressed(threshold=0, algorithm=algorithm)
    bomb = writer.dumps(b"\0" * (50 * 1024 * 1024))  # 50 MiB of zeros, a few hundred KiB stored
    assert len(bomb) < 300_000
    reader = Compressed(threshold=0, algorithm=algorithm, max_size=1024 * 1024)
    with pytest.raises(UntrustedDataError, match="max_size"):
        reader.loads(bomb)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_damaged_or_foreign_bytes_are_refused(algorithm: str) -> None:
    serializer = Compressed(threshold=0, algorithm=algorithm)
    data = serializer.dumps("a" * 5000)
    for bad in (data[:-4], data[:3], data[:1] + os.urandom(64), data[:1]):
        with pytest.raises(UntrustedDataError):
            serializer.loads(bad)
    other = Compressed(threshold=0, algorithm="zstd" if algorithm == "zlib" else "zlib")
    with pytest.raises(UntrustedDataError, match="compressed with"):
        other.loads(data)
    if algorithm == "zstd":  # a frame that does not declare its size is not ours
        import zstandard

        frameless = zstandard.ZstdCompressor(write_content_size=False).compress(b"x" * 100)
        with pytest.raises(UntrustedDataError, match="declared size"):
            serializer.loads(ZSTD_TAG + frameless)
    assert zlib  # stdlib, always there


def test_it_wraps_any_serializer_and_keeps_declared_types() -> None:
    pickled = Compressed(SignedPickleSerializer(key=b"k" * 32), threshold=0)
    assert pickled.loads(pickled.dumps({1, 2, 3})) == {1, 2, 3}
    typed = Compressed(threshold=0)
    data = typed.dumps([(1, "a")] * 100, value_type=list[tuple[int, str]])
    assert typed.loads(data, value_type=list[tuple[int, str]]) == [(1, "a")] * 100


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="algorithm"):
        Compressed(algorithm="lz4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        Compressed(threshold=-1)
    with pytest.raises(ValueError, match="max_size"):
        Compressed(max_size=0)
    with pytest.raises(ValueError, match="algorithm"):
        RedisLayer("redis://127.0.0.1:1/0", compression="gzip")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="compression"):
        RedisLayer("redis://127.0.0.1:1/0", compression=9)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="both"):
        RedisLayer(
            "redis://127.0.0.1:1/0", serializer=MsgpackSerializer(), compression=Compressed()
        )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_redis_layer_shares_its_keys_with_caches_without_compression(
    algorithm: str, redis_url: str, prefix: str, raw_redis: Any
) -> None:
    compressing = RedisLayer(redis_url, prefix=prefix, compression=algorithm)
    plain = RedisLayer(redis_url, prefix=prefix)
    document = {"items": [{"id": index, "name": f"product {index}"} for index in range(200)]}
    compressing.set("big", document)
    compressing.set("small", {"id": 1})
    plain.set("plain", document)
    assert len(raw_redis.get(prefix + "big")) < len(raw_redis.get(prefix + "plain")) / 3
    wanted = ["big", "small", "plain", "missing"]
    expected = {"big": document, "small": {"id": 1}, "plain": document}
    assert compressing.get_many(wanted) == expected  # batch reads, item by item when needed
    assert compressing.get("big") == document and compressing.get("plain") == document
    assert plain.get("small") == {"id": 1}  # uncompressed values stay readable by everyone
    assert plain.get("big") is None  # a compressed one is not MessagePack: a counted miss
    assert plain.stats().errors == 1
    compressing.close()
    plain.close()
