"""``load_trace``: .npy and .npz traces, read in-process."""

from __future__ import annotations

import numpy as np
import pytest

from multilayercache.tools.simulation import load_trace


@pytest.mark.parametrize("dtype", [np.uint8, np.uint32, np.uint64, np.int16, np.int64])
def test_npz_keys_of_any_integer_type_become_uint64(tmp_path, dtype) -> None:
    path = tmp_path / "trace.npz"
    np.savez(path, keys=np.array([3, 1, 3, 0], dtype=dtype))
    trace = load_trace(path)
    assert trace.dtype == np.uint64 and trace.tolist() == [3, 1, 3, 0]


def test_npz_keep_keys_up_to_two_to_the_64(tmp_path) -> None:
    keys = [2**64 - 1, 2**63, 2**32 - 1, 0]
    np.savez_compressed(tmp_path / "hashes.npz", keys=np.array(keys, dtype=np.uint64))
    np.savez(tmp_path / "narrow.npz", keys=np.array([2**32 - 1, 7], dtype=np.uint32))
    assert load_trace(tmp_path / "hashes.npz").tolist() == keys
    assert load_trace(tmp_path / "narrow.npz").tolist() == [2**32 - 1, 7]


def test_the_contents_decide_the_format_not_the_name(tmp_path) -> None:
    np.savez(tmp_path / "trace.npz", keys=np.arange(3), other=np.zeros(2))
    (tmp_path / "trace.npz").rename(tmp_path / "misnamed.npy")
    assert load_trace(tmp_path / "misnamed.npy").tolist() == [0, 1, 2]


def test_npz_without_keys_names_what_it_holds(tmp_path) -> None:
    np.savez(tmp_path / "t.npz", requests=np.arange(3), sizes=np.arange(3))
    with pytest.raises(ValueError, match="'keys'.*requests, sizes"):
        load_trace(tmp_path / "t.npz")


def test_npz_keys_are_checked_like_npy(tmp_path) -> None:
    np.savez(tmp_path / "floats.npz", keys=np.array([1.5]))
    np.savez(tmp_path / "negative.npz", keys=np.array([1, -2]))
    with pytest.raises(ValueError, match="integer keys"):
        load_trace(tmp_path / "floats.npz")
    with pytest.raises(ValueError, match=">= 0"):
        load_trace(tmp_path / "negative.npz")


def test_files_that_are_no_trace_raise_value_error_naming_the_file(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt: not a trace"):
        load_trace(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError):
        load_trace(tmp_path / "missing.npy")
