import pytest
from transformers import AutoTokenizer

from swat.cli import main
from swat.data.corpus import default_data_dir
from swat.data.shards import TokenShards, read_manifest


def test_data_prepare_and_info(tmp_path, text_dir, capsys):
    out = tmp_path / "out"
    args = ["data", "prepare", str(text_dir), "--out", str(out), "--vocab-size", "300", "--heldout-fraction", "0.2",
            "--num-proc", "1", "--no-progress"]
    assert main(args) == 0
    assert read_manifest(out)["splits"]["heldout"]["documents"] == 1
    assert main(args) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["data", "info", str(out)]) == 0
    assert "train:" in capsys.readouterr().out
    assert main(["data"]) == 0 and "swat data shakespeare" in capsys.readouterr().out


def test_data_shakespeare_from_archive(tmp_path, fake_archive, capsys):
    out = default_data_dir(tmp_path / "cache")  # no --out: where training looks by default
    assert main(["data", "shakespeare", "--corpus-archive", str(fake_archive), "--cache-dir",
                 str(tmp_path / "cache"), "--vocab-size", "300", "--num-proc", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "held out: hamlet, henry_v, twelfth_night" in printed
    heldout = TokenShards(out, "heldout")
    assert heldout.document_names == ["hamlet.txt", "henry_v.txt", "twelfth_night.txt"]
    assert TokenShards(out, "train").document_names == ["macbeth.txt", "sonnets.txt", "tempest.txt"]
    tok = AutoTokenizer.from_pretrained(out / "tokenizer")
    start, end = heldout.document_spans()[0]
    assert tok.decode(heldout.window(start, end - start)).startswith("HAMLET\n\nby William Shakespeare")


def test_tokenizer_and_vocab_size_are_exclusive(tmp_path):
    with pytest.raises(SystemExit):
        main(["data", "prepare", str(tmp_path), "--out", str(tmp_path / "o"), "--tokenizer", "x", "--vocab-size", "9"])


def test_prepare_needs_files_or_a_dataset(tmp_path, text_dir, capsys):
    assert main(["data", "prepare", "--out", str(tmp_path / "o")]) == 2
    assert main(["data", "prepare", str(text_dir), "--dataset", "x", "--out", str(tmp_path / "o")]) == 2
    assert "not both or neither" in capsys.readouterr().err
