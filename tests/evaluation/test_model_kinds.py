"""Every evaluation names how a model sees its context (window, full attention, recurrent), and
the attention diagnosis runs on any model with attention weights and refuses one without."""

import json

from transformers import Mamba2Config

from swat.cli import main
from swat.evaluation.attention import diagnose_attention
from swat.evaluation.heldout import read_tokens, sequences_of
from swat.evaluation.length import evaluate_lengths
from swat.evaluation.model_info import model_kind
from swat.evaluation.passkey import evaluate_passkey, passkey_markdown
from swat.models.loading import load_model

from .conftest import tiny_config


def test_model_kind_names_window_full_attention_and_recurrence():
    assert model_kind(tiny_config(300)) == "window 16"
    assert model_kind(tiny_config(300, sliding_window=None)) == "full attention"
    assert model_kind(Mamba2Config(hidden_size=32, num_heads=4, head_dim=16)) == "recurrent (mamba2)"


def test_length_and_passkey_label_a_mamba2_as_recurrent(mamba2_dir, text_file):
    model, tokenizer = load_model(mamba2_dir)
    tokens = read_tokens(text_file, tokenizer)
    result = evaluate_lengths(model, tokens, [32, 64], max_tokens=128, label="mamba2")
    assert result["kind"] == "recurrent (mamba2)" and all(row["ppl"] > 1 for row in result["lengths"])
    passkey = evaluate_passkey(model, tokenizer, [256], [100], trials=1, label="mamba2")
    assert passkey["kind"] == "recurrent (mamba2)"
    assert "### mamba2 (recurrent (mamba2), receptive field unbounded" in passkey_markdown([passkey])


def test_cli_tables_show_the_kind(tmp_path, swat_dir, softmax_dir, mamba2_dir, text_file, capsys):
    out = tmp_path / "length"
    assert main(["eval", "length", "--models", str(swat_dir), str(softmax_dir), str(mamba2_dir), "--text",
                 str(text_file), "--lengths", "32,64", "--max-tokens", "128", "--out", str(out)]) == 0
    table = (out / "length.md").read_text()
    assert "| swat | window 16 |" in table and "| transformer | full attention |" in table
    assert "| mamba2 | recurrent (mamba2) |" in table
    capsys.readouterr()
    assert main(["eval", "ppl", "--model", str(mamba2_dir), "--text", str(text_file), "--max-tokens", "200"]) == 0
    assert "model: recurrent (mamba2)" in capsys.readouterr().out


def test_attention_diagnosis_refuses_a_recurrent_model_saying_why(mamba2_dir, text_file, tmp_path, capsys):
    assert main(["diagnose", "attention", "--model", str(mamba2_dir), "--text", str(text_file), "--length", "32",
                 "--sequences", "1", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "mamba2 is recurrent (mamba2): it has no attention weights" in error and "does not apply" in error


def test_attention_diagnosis_of_an_sdpa_model_uses_its_eager_weights(llama_dir, text_file, tmp_path):
    model, tokenizer = load_model(llama_dir)
    assert model.config._attn_implementation == "sdpa"
    sequences = sequences_of(read_tokens(text_file, tokenizer), 32, 2)
    result = diagnose_attention(model, sequences, label="llama")
    assert result["kind"] == "full attention" and result["activation"] == "softmax"
    assert abs(result["mean"]["total_weight"] - 1) < 1e-6  # softmax rows sum to one
    assert model.config._attn_implementation == "sdpa"  # given back its own attention
    assert main(["diagnose", "attention", "--model", str(llama_dir), "--text", str(text_file), "--length", "32",
                 "--sequences", "1", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "attention.json").read_text())[0]["kind"] == "full attention"
