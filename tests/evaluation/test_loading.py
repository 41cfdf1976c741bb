import json

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from swat.data.shards import write_split
from swat.evaluation.heldout import read_tokens, sequences_of, token_pieces
from swat.evaluation.model_info import model_label, receptive_field, training_length
from swat.models.loading import load_model
from swat.training.run_dir import RunDir

from .conftest import save_model, tiny_config


@pytest.fixture
def run(tmp_path, tokenizer):
    """A run directory as ``swat train`` leaves it: its config, a checkpoint and the final model."""
    run = RunDir(tmp_path / "my-run")
    save_model(run.final, tokenizer)
    save_model(run.checkpoints / "step_00000010", tokenizer)
    run.config.write_text(yaml.safe_dump({"name": "my-run", "data": {"seq_len": 48}}))
    return run


def test_a_model_of_a_run_is_labelled_and_knows_its_training_length(run, swat_dir):
    assert model_label(run.final) == "my-run" and training_length(run.final) == 48
    checkpoint = run.checkpoints / "step_00000010"
    assert model_label(checkpoint) == "my-run/step_00000010" and training_length(checkpoint) == 48
    assert model_label(swat_dir) == "swat" and training_length(swat_dir) is None


def test_load_model_reads_a_saved_model_and_its_tokenizer(swat_dir, tokenizer):
    model, loaded = load_model(swat_dir, dtype=torch.float64)
    assert not model.training and model.dtype == torch.float64 and len(loaded) == len(tokenizer)
    ids = torch.tensor([tokenizer("the king and queen")["input_ids"]])
    torch.manual_seed(0)  # save_model's seed: the same weights
    expected = type(model)(tiny_config(len(tokenizer), eos_token_id=tokenizer.eos_token_id)).double().eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, expected(ids).logits, rtol=0, atol=1e-12)


def test_load_model_explains_what_is_missing(tmp_path, swat_dir):
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        load_model(tmp_path)
    model_only = tmp_path / "model-only"
    model, _ = load_model(swat_dir)
    model.save_pretrained(model_only)
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        load_model(model_only)


def test_read_tokens_from_a_text_file_or_a_data_dir(tmp_path, tokenizer, text_file):
    ids = tokenizer(text_file.read_text(), add_special_tokens=False)["input_ids"]
    assert read_tokens(text_file, tokenizer, max_tokens=50).tolist() == ids[:50]
    write_split(tmp_path, "heldout", [ids[:30], ids[30:70]], vocab_size=len(tokenizer),
                eos_token_id=tokenizer.eos_token_id)
    assert read_tokens(tmp_path, tokenizer).tolist() == ids[:30] + [tokenizer.eos_token_id] + ids[30:70] + [
        tokenizer.eos_token_id]
    with pytest.raises(FileNotFoundError, match="text not found"):
        read_tokens(tmp_path / "missing.txt", tokenizer)


@pytest.fixture(scope="module")
def metaspace_tokenizer(text) -> PreTrainedTokenizerFast:
    """A SentencePiece-style BPE: spaces become "▁" and the start of every text gets one, so the ids
    of a text cut in two are not those of the whole."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(prepend_scheme="first")
    tokenizer.train_from_iterator([text], trainers.BpeTrainer(vocab_size=200, special_tokens=["</s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>")


@settings(max_examples=40, deadline=None)
@given(text=st.lists(st.sampled_from(["a", "b", "ab", " ", "  ", "\n", "\t", ".", "é", "😀"]), min_size=80, max_size=300).map("".join),
       piece_chars=st.integers(1, 50))
def test_text_read_in_pieces_has_the_ids_of_the_whole_text(tmp_path_factory, tokenizer, metaspace_tokenizer,
                                                           text, piece_chars):
    path = tmp_path_factory.mktemp("pieces") / "text.txt"
    path.write_text(text, encoding="utf-8")
    for tok in (tokenizer, metaspace_tokenizer):
        whole = tok(text, add_special_tokens=False)["input_ids"]
        pieces = list(token_pieces(path, tok, piece_chars=piece_chars))
        assert torch.cat(pieces).tolist() == whole if pieces else whole == []


def test_text_pieces_are_cut_where_whitespace_begins_or_ends(tmp_path, tokenizer, text_file):
    text = text_file.read_text()
    pieces = list(token_pieces(text_file, tokenizer, piece_chars=100))
    assert len(pieces) > len(text) // 200
    assert torch.cat(pieces).tolist() == tokenizer(text, add_special_tokens=False)["input_ids"]


def test_a_data_dir_is_read_only_with_the_tokenizer_it_was_prepared_with(tmp_path, tokenizer, text_file):
    ids = tokenizer(text_file.read_text(), add_special_tokens=False)["input_ids"][:100]
    tokenizer.save_pretrained(tmp_path / "tokenizer")  # before the manifest, which fingerprints it
    write_split(tmp_path, "heldout", [ids], vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                tokenizer="tokenizer")
    assert read_tokens(tmp_path, tokenizer).tolist() == ids + [tokenizer.eos_token_id]
    spec = json.loads((tmp_path / "tokenizer" / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    first, second = "a", "b"
    vocab[first], vocab[second] = vocab[second], vocab[first]  # the same size, two ids swapped
    (tmp_path / "tokenizer" / "tokenizer.json").write_text(json.dumps(spec))
    assert len(AutoTokenizer.from_pretrained(tmp_path / "tokenizer")) == len(tokenizer)
    with pytest.raises(ValueError, match="another tokenizer than the model's"):
        read_tokens(tmp_path, tokenizer)


def test_sequences_of_a_stream():
    tokens = torch.arange(10)
    assert sequences_of(tokens, 4, 5).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ValueError, match="fewer than one sequence of 11"):
        sequences_of(tokens, 11, 1)


def test_receptive_field():
    assert receptive_field(tiny_config(97, sliding_window=16, num_hidden_layers=3)) == 3 * 15 + 1
    assert receptive_field(tiny_config(97, sliding_window=None)) is None
