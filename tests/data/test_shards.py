import json
import pickle

import numpy as np
import pytest

from swat.data.shards import (
    MANIFEST_NAME,
    ShardWriter,
    TokenShards,
    read_manifest,
    token_dtype,
    write_split,
)
from swat.utils.io import atomic_write_json


def _random_docs(rng, n, vocab_size, eos):
    docs = []
    for _ in range(n):
        doc = rng.integers(0, vocab_size, size=int(rng.integers(0, 40)))
        docs.append(doc[doc != eos])
    return docs


def _stream(docs, eos):
    return np.concatenate([np.append(d, eos) for d in docs]).astype(np.int64)


@pytest.mark.parametrize("vocab_size", [300, 70_000])
def test_round_trip_windows_cross_shards(tmp_path, vocab_size):
    rng = np.random.default_rng(0)
    eos = vocab_size - 1
    docs = _random_docs(rng, 30, vocab_size, eos)
    manifest = write_split(tmp_path, "train", docs, vocab_size=vocab_size, eos_token_id=eos, shard_tokens=17)
    expected = _stream(docs, eos)

    ts = TokenShards(tmp_path, "train")
    assert len(ts) == expected.size == manifest["splits"]["train"]["tokens"]
    assert ts.documents == 30 and len(ts.shard_paths) == -(-expected.size // 17)
    assert ts.eos_token_id == eos and ts.vocab_size == vocab_size
    assert manifest["dtype"] == ("uint16" if vocab_size <= 65536 else "uint32")
    itemsize = 2 if vocab_size <= 65536 else 4
    assert (tmp_path / "train-00000.bin").stat().st_size == 17 * itemsize
    for start in range(0, expected.size - 40, 7):  # every window of 40 spans 2-4 shards
        window = ts.window(start, 40)
        assert window.dtype == np.int64
        np.testing.assert_array_equal(window, expected[start:start + 40])
    np.testing.assert_array_equal(np.concatenate(list(ts.iter_chunks(23))), expected)


def test_uint16_boundary_and_raw_little_endian_layout(tmp_path):
    assert token_dtype(65536) == "uint16" and token_dtype(65537) == "uint32"
    write_split(tmp_path, "train", [[65535, 1, 2]], vocab_size=65536, eos_token_id=0)
    raw = (tmp_path / "train-00000.bin").read_bytes()
    assert raw == np.array([65535, 1, 2, 0], dtype="<u2").tobytes()


def test_document_spans_and_eos_separation(tmp_path):
    docs = [[5, 6, 7], [], [8], [9, 9, 9, 9]]
    write_split(tmp_path, "train", docs, vocab_size=10, eos_token_id=0, shard_tokens=3)
    ts = TokenShards(tmp_path, "train")
    np.testing.assert_array_equal(ts.window(0, len(ts)), [5, 6, 7, 0, 0, 8, 0, 9, 9, 9, 9, 0])
    spans = ts.document_spans()
    assert [ts.window(s, e - s).tolist() for s, e in spans] == [list(d) for d in docs]


def test_two_splits_share_one_manifest(tmp_path):
    write_split(tmp_path, "train", [[1, 2]], vocab_size=10, eos_token_id=0)
    write_split(tmp_path, "heldout", [[3]], vocab_size=10, eos_token_id=0)
    manifest = read_manifest(tmp_path)
    assert set(manifest["splits"]) == {"train", "heldout"}
    assert TokenShards(tmp_path, "heldout").window(0, 2).tolist() == [3, 0]
    with pytest.raises(ValueError, match="vocab_size=10"):
        write_split(tmp_path, "other", [[1]], vocab_size=20, eos_token_id=0)
    write_split(tmp_path, "train", [[4], [5, 6]], vocab_size=10, eos_token_id=0)  # replace a split
    assert TokenShards(tmp_path, "train").window(0, 5).tolist() == [4, 0, 5, 6, 0]
    assert TokenShards(tmp_path, "heldout").documents == 1

    def failing():
        yield [7]
        raise RuntimeError("crash while rewriting")

    with pytest.raises(RuntimeError):
        write_split(tmp_path, "train", failing(), vocab_size=10, eos_token_id=0)
    assert set(read_manifest(tmp_path)["splits"]) == {"heldout"}  # no manifest entry for a half-written split


def test_pickled_shards_reopen_maps(tmp_path):
    write_split(tmp_path, "train", [[1, 2, 3]], vocab_size=10, eos_token_id=0)
    ts = TokenShards(tmp_path, "train")
    ts.window(0, 2)
    clone = pickle.loads(pickle.dumps(ts))
    assert clone._maps is None and clone.window(1, 3).tolist() == [2, 3, 0]


def test_errors_are_explicit(tmp_path):
    with pytest.raises(FileNotFoundError, match="swat data prepare"):
        TokenShards(tmp_path, "train")
    write_split(tmp_path, "train", [[1, 2, 3]], vocab_size=10, eos_token_id=0)
    with pytest.raises(ValueError, match="has no split 'heldout'"):
        TokenShards(tmp_path, "heldout")
    ts = TokenShards(tmp_path, "train")
    with pytest.raises(IndexError, match="outside split"):
        ts.window(2, 3)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        write_split(tmp_path / "b", "train", [[1, 10]], vocab_size=10, eos_token_id=0)
    with pytest.raises(ValueError, match="eos_token_id 10"):
        write_split(tmp_path / "c", "train", [[1]], vocab_size=10, eos_token_id=10)
    (tmp_path / "train-00000.bin").write_bytes(b"\x01\x00\x02")
    with pytest.raises(ValueError, match="not a multiple"):
        TokenShards(tmp_path, "train")
    (tmp_path / "train-00000.bin").unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        TokenShards(tmp_path, "train")


def test_manifest_written_atomically(tmp_path, monkeypatch):
    write_split(tmp_path, "train", [[1, 2]], vocab_size=10, eos_token_id=0)
    before = (tmp_path / MANIFEST_NAME).read_text()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("swat.data.shards.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(tmp_path / MANIFEST_NAME, {"format": 1, "garbage": True})
    assert (tmp_path / MANIFEST_NAME).read_text() == before  # old manifest intact
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME, "train-00000.bin"]  # no temp left


def test_interrupted_writer_leaves_no_partial_shard(tmp_path):
    def docs():
        yield [1, 2, 3]
        raise RuntimeError("tokenizer crashed")

    with pytest.raises(RuntimeError), ShardWriter(tmp_path, "train", vocab_size=10, eos_token_id=0,
                                                  shard_tokens=100) as writer:
        for doc in docs():
            writer.add(doc)
    assert list(tmp_path.iterdir()) == []


def test_bad_manifest_format(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="format 99"):
        read_manifest(tmp_path)
