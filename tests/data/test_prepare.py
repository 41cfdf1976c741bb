import json

import datasets
import numpy as np
import pytest

from swat.data.prepare import prepare_data
from swat.data.shards import TokenShards, read_manifest
from swat.data.sources import dataset_documents
from swat.data.tokenizer import encode_documents, load_tokenizer
from tests.conftest import make_text


def _documents(data_dir, split):
    ts = TokenShards(data_dir, split)
    return [ts.window(s, e - s).tolist() for s, e in ts.document_spans()]


def _expected(data_dir, texts):
    tok = load_tokenizer(data_dir / "tokenizer")
    return [list(ids) for ids in encode_documents(tok, texts)]


def _prepare(*args, **kwargs):
    return prepare_data(*args, **{"vocab_size": 300, "progress": False, "num_proc": 1, **kwargs})


def _prepare_dataset(dataset, out_dir, *, tokenizer=None, num_proc=1, **options):
    return _prepare(dataset_documents(dataset, **options), out_dir, tokenizer=tokenizer, num_proc=num_proc)


def test_files_and_heldout_files(tmp_path, text_dir):
    out = tmp_path / "out"
    train = [text_dir / "a.txt", text_dir / "b.txt", text_dir / "sub"]
    manifest = _prepare(train, out, heldout_files=[text_dir / "c.txt"])
    assert manifest["tokenizer"] == "tokenizer" and manifest["dtype"] == "uint16"
    assert manifest["vocab_size"] == 300 and manifest["splits"]["train"]["names"] == ["a.txt", "b.txt", "e.txt"]
    assert manifest["splits"]["heldout"]["names"] == ["c.txt"]
    texts = [(text_dir / n).read_text() for n in ["a.txt", "b.txt", "sub/e.txt"]]
    assert _documents(out, "train") == _expected(out, texts)  # each file one document, EOS after each
    assert _documents(out, "heldout") == _expected(out, [(text_dir / "c.txt").read_text()])
    ts = TokenShards(out, "train")
    assert ts.window(len(ts) - 1, 1)[0] == ts.eos_token_id
    assert int((ts.window(0, len(ts)) == ts.eos_token_id).sum()) == 3
    tok = load_tokenizer(out / "tokenizer")  # tokenizer trained on the training files only
    assert len(tok) == 300 and tok.eos_token_id == manifest["eos_token_id"]


def test_heldout_files_inside_a_training_directory_are_not_trained_on(tmp_path, text_dir):
    manifest = _prepare([text_dir], tmp_path / "out", heldout_files=[text_dir / "c.txt", text_dir / "sub"])
    assert manifest["splits"]["train"]["names"] == ["a.txt", "b.txt", "d.txt"]
    assert manifest["splits"]["heldout"]["names"] == ["c.txt", "e.txt"]
    with pytest.raises(ValueError, match="every input file is also a held-out file"):
        _prepare([text_dir / "c.txt"], tmp_path / "out2", heldout_files=[text_dir])


def test_directory_heldout_fraction_is_deterministic(tmp_path, text_dir):
    m1 = _prepare([text_dir], tmp_path / "one", heldout_fraction=0.4)
    m2 = _prepare([text_dir], tmp_path / "two", heldout_fraction=0.4, num_proc=2)
    names = ["a.txt", "b.txt", "c.txt", "d.txt", "sub/e.txt"]
    held = m1["splits"]["heldout"]["names"]
    assert len(held) == 2 and sorted(held + m1["splits"]["train"]["names"]) == names
    assert m2["splits"] == m1["splits"]  # num_proc does not change anything
    for split in ("train", "heldout"):
        a, b = TokenShards(tmp_path / "one", split), TokenShards(tmp_path / "two", split)
        np.testing.assert_array_equal(a.window(0, len(a)), b.window(0, len(b)))


def test_single_file_holds_out_its_tail(tmp_path, text_dir):
    text = (text_dir / "d.txt").read_text()
    manifest = _prepare([text_dir / "d.txt"], tmp_path / "out", heldout_fraction=0.25)
    assert manifest["splits"]["train"]["documents"] == manifest["splits"]["heldout"]["documents"] == 1
    tok = load_tokenizer(tmp_path / "out" / "tokenizer")
    head, tail = (tok.decode(d) for d in (_documents(tmp_path / "out", s)[0] for s in ("train", "heldout")))
    assert head + tail == text and head.endswith("\n") and 0.15 < len(tail) / len(text) < 0.35


def _names(out):
    """The entries of a prepared directory but its lock and ownership marker."""
    return sorted(p.name for p in out.iterdir() if p.name not in (".lock", ".swat-data"))


@pytest.mark.parametrize("as_dict", [False, True])
def test_dataset_saved_to_disk(tmp_path, as_dict):
    texts = [make_text(40 + i, seed=i) for i in range(20)]
    ds = datasets.Dataset.from_dict({"content": texts, "id": list(range(20))})
    (datasets.DatasetDict({"train": ds}) if as_dict else ds).save_to_disk(str(tmp_path / "ds"))
    out = tmp_path / "out"
    manifest = _prepare_dataset(str(tmp_path / "ds"), out, text_column="content", heldout_fraction=0.2, num_proc=2)
    held, train = manifest["splits"]["heldout"], manifest["splits"]["train"]
    assert held["documents"] == 4 and train["documents"] == 16 and "names" not in train
    got = _documents(out, "train") + _documents(out, "heldout")
    assert sorted(got) == sorted(_expected(out, texts))
    assert _documents(out, "train") == [d for d in _expected(out, texts) if d in _documents(out, "train")]
    assert not list((tmp_path / "ds").rglob("cache-*"))  # the tokenized rows never land in the user's dataset
    assert _prepare_dataset(str(tmp_path / "ds"), out, text_column="content", heldout_fraction=0.2) == manifest
    assert _names(out) == ["heldout-00000.bin", "manifest.json", "tokenizer",
                                                     "train-00000.bin"]


def test_dataset_streaming_and_heldout_split(tmp_path):
    train = [make_text(30, seed=i) for i in range(6)]
    valid = [make_text(30, seed=100 + i) for i in range(2)]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": train}),
                          "validation": datasets.Dataset.from_dict({"text": valid})}).save_to_disk(str(tmp_path / "ds"))
    for streaming in (False, True):
        out = tmp_path / f"out{streaming}"
        _prepare_dataset(str(tmp_path / "ds"), out, heldout_split="validation", streaming=streaming)
        assert _documents(out, "train") == _expected(out, train)
        assert _documents(out, "heldout") == _expected(out, valid)


def test_jsonl_dataset_file_and_given_tokenizer(tmp_path, text_dir):
    first = _prepare([text_dir], tmp_path / "first")
    rows = [{"text": make_text(25, seed=i)} for i in range(10)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    manifest = _prepare_dataset(str(tmp_path / "rows.jsonl"), out, tokenizer=str(tmp_path / "first" / "tokenizer"))
    assert manifest["vocab_size"] == first["vocab_size"]
    assert (out / "tokenizer" / "tokenizer.json").read_text() == (tmp_path / "first" / "tokenizer" / "tokenizer.json").read_text()
    assert sorted(_documents(out, "train") + _documents(out, "heldout")) == sorted(_expected(out, [r["text"] for r in rows]))


def test_rerun_is_a_noop_and_changes_are_noticed(tmp_path, text_dir, capsys):
    out = tmp_path / "out"
    _prepare([text_dir], out)
    stamps = {name: (out / name).stat().st_mtime_ns for name in _names(out)}
    capsys.readouterr()
    _prepare([text_dir], out)
    assert "nothing to do" in capsys.readouterr().out
    assert {name: (out / name).stat().st_mtime_ns for name in _names(out)} == stamps

    _prepare([text_dir], out, vocab_size=310)  # another setting: prepared again
    assert "nothing to do" not in capsys.readouterr().out and read_manifest(out)["vocab_size"] == 310
    (text_dir / "b.txt").write_text("changed text\n")  # another input: prepared again
    _prepare([text_dir], out, vocab_size=310)
    assert "nothing to do" not in capsys.readouterr().out

    _prepare([text_dir], out, vocab_size=310, shard_tokens=64)  # many shards, then few: stale ones removed
    assert len(list(out.glob("train-*.bin"))) > 1
    _prepare([text_dir], out, vocab_size=310)
    assert sorted(p.name for p in out.glob("*.bin")) == ["heldout-00000.bin", "train-00000.bin"]
    (out / ".train-00000.bin.x1.tmp").write_bytes(b"left by a killed run")
    (out / ".tokenizer.x2.tmp").mkdir()
    (out / "train-00000.bin").unlink()  # a damaged directory is not "up to date"
    _prepare([text_dir], out, vocab_size=310)
    assert "nothing to do" not in capsys.readouterr().out and TokenShards(out, "train").documents == 4
    assert _names(out) == ["heldout-00000.bin", "manifest.json", "tokenizer",
                                                     "train-00000.bin"]


def test_bad_inputs_say_what_to_do(tmp_path, text_dir):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _prepare([tmp_path / "missing.txt"], out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .txt files"):
        _prepare([tmp_path / "empty"], out)
    with pytest.raises(ValueError, match="nothing to prepare"):
        _prepare([], out)
    with pytest.raises(ValueError, match="heldout_files are for text-file inputs"):
        _prepare(dataset_documents(datasets.Dataset.from_dict({"text": ["x", "y"]})), out, heldout_files=[text_dir])
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        _prepare([text_dir], out, heldout_fraction=1.0)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        _prepare([tmp_path / "latin1.txt"], out, heldout_fraction=0)
    datasets.Dataset.from_dict({"body": ["x", "y"]}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(ValueError, match="no column 'text'.*--text-column"):
        _prepare_dataset(str(tmp_path / "ds"), out)
    with pytest.raises(ValueError, match="column 'number' holds .*int64.*, not text"):
        _prepare_dataset(datasets.Dataset.from_dict({"number": [1, 2]}), out, text_column="number")
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["x"]})}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ValueError, match="not 'test'"):
        _prepare_dataset(str(tmp_path / "dd"), out, split="test")
    with pytest.raises(FileNotFoundError, match="not a hub name"):
        _prepare_dataset(str(tmp_path / "missing_dataset"), out)
    assert not (out / "manifest.json").exists()


def test_dataset_object_and_streaming_fraction(tmp_path):
    texts = [make_text(12, seed=i) for i in range(40)]
    ds = datasets.Dataset.from_dict({"text": texts})
    out = tmp_path / "obj"
    _prepare_dataset(ds, out, heldout_fraction=0.25)
    assert TokenShards(out, "heldout").documents == 10
    ds.save_to_disk(str(tmp_path / "ds"))
    out = tmp_path / "stream"
    _prepare_dataset(str(tmp_path / "ds"), out, heldout_fraction=0.25, streaming=True)
    train, held = _documents(out, "train"), _documents(out, "heldout")
    assert 0 < len(held) < 20 and len(train) + len(held) == 40
    assert sorted(train + held) == sorted(_expected(out, texts))
