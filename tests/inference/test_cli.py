"""``swat generate`` and ``swat eval ppl`` on a tiny model saved with a tiny byte-level BPE tokenizer,
and the Python API behind ``eval ppl``."""

import io
import math
import re

import pytest
import torch
import torch.nn.functional as F

from swat import SWATForCausalLM
from swat.cli import main
from swat.inference import streaming_nll
from swat.models.loading import load_model
from tests.conftest import make_tokenizer, tiny_config

SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "a sliding window of attention keeps the cache small",
    "sigmoid attention needs no softmax normalisation",
    "streams of text longer than any window are fine",
] * 5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    tokenizer = make_tokenizer("\n".join(SENTENCES), vocab_size=300)
    config = tiny_config(vocab_size=len(tokenizer), eos_token_id=None, pad_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    SWATForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_generate_streams_the_greedy_continuation(model_dir, capsys):
    model, tokenizer = load_model(model_dir)
    prompt = "the lazy fox"
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    expected = model.generate(ids, max_new_tokens=20, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    continuation = tokenizer.decode(expected[0, ids.shape[1]:])
    assert main(["generate", "--model", str(model_dir), "--prompt", prompt,
                 "--max-new-tokens", "20", "--temperature", "0"]) == 0
    assert capsys.readouterr().out == prompt + continuation + "\n"


def test_generate_reads_the_prompt_from_a_file_or_stdin(model_dir, tmp_path, capsys, monkeypatch):
    prompt = "a sliding window"
    args = ["generate", "--model", str(model_dir), "--max-new-tokens", "8", "--temperature", "0.7", "--seed", "3"]
    assert main([*args, "--prompt", prompt]) == 0
    from_argument = capsys.readouterr().out
    (tmp_path / "prompt.txt").write_text(prompt, encoding="utf-8")
    assert main([*args, "--prompt-file", str(tmp_path / "prompt.txt")]) == 0
    assert capsys.readouterr().out == from_argument
    monkeypatch.setattr("sys.stdin", io.StringIO(prompt))
    assert main(args) == 0
    assert capsys.readouterr().out == from_argument
    assert from_argument.startswith(prompt) and len(from_argument) > len(prompt) + 1


def test_generate_streams_each_token_without_redecoding_the_line(model_dir, capsys):
    """The streamer decodes every new token on its own (with a few tokens before it as context),
    and what it writes is the decoding of the whole continuation, multi-byte characters too."""
    from swat.cli.generate import IncrementalTextStreamer

    model, tokenizer = load_model(model_dir)
    prompt = tokenizer("the fox", add_special_tokens=False)["input_ids"]
    continuation = tokenizer("é jumps ünder 😀 the lazy dög", add_special_tokens=False)["input_ids"]
    streamer = IncrementalTextStreamer(tokenizer, prompt, file=io.StringIO())
    streamer.put(torch.tensor([prompt]))
    for token in continuation:
        streamer.put(torch.tensor([token]))
    streamer.end()
    assert streamer.file.getvalue() == tokenizer.decode(prompt + continuation)[len("the fox"):] + "\n"


def test_generate_rejects_bad_arguments_with_a_message(model_dir, capsys):
    assert main(["generate", "--model", str(model_dir), "--prompt", "x", "--temperature", "1e-9"]) == 2
    assert capsys.readouterr().err.startswith("swat generate: --temperature 1e-09 is too small")


def test_eval_ppl_equals_the_perplexity_of_one_full_forward(model_dir, tmp_path, capsys):
    model, tokenizer = load_model(model_dir)
    text = " ".join(SENTENCES)
    (tmp_path / "book.txt").write_text(text, encoding="utf-8")
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert ids.numel() > 10 * model.config.sliding_window
    with torch.no_grad():
        expected = math.exp(model(ids[None], labels=ids[None]).loss.item())
    for dtype in ("float32", "float64"):
        assert main(["eval", "ppl", "--model", str(model_dir), "--text", str(tmp_path / "book.txt"),
                     "--chunk-size", "7", "--dtype", dtype]) == 0
        printed = capsys.readouterr().out
        assert float(re.search(r"perplexity: ([0-9.]+)", printed).group(1)) == pytest.approx(expected, rel=1e-5)
        assert "tokens/s" in printed


def test_eval_ppl_streams_the_text_in_pieces_with_the_tokens_of_the_whole(model_dir, tmp_path, capsys, monkeypatch):
    model, tokenizer = load_model(model_dir)
    text = "\n".join(SENTENCES) + "\n"
    (tmp_path / "book.txt").write_text(text, encoding="utf-8")
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        expected = math.exp(model(ids[None], labels=ids[None]).loss.item())
    monkeypatch.setattr("swat.evaluation.heldout.TEXT_PIECE_CHARS", 40)  # a few lines per piece
    assert main(["eval", "ppl", "--model", str(model_dir), "--text", str(tmp_path / "book.txt"),
                 "--chunk-size", "16"]) == 0
    printed = capsys.readouterr().out
    assert f"tokens: {ids.numel():,}" in printed
    assert float(re.search(r"perplexity: ([0-9.]+)", printed).group(1)) == pytest.approx(expected, rel=1e-5)
    assert main(["eval", "ppl", "--model", str(model_dir), "--text", str(tmp_path / "book.txt"),
                 "--max-tokens", "30"]) == 0
    with torch.no_grad():
        expected = math.exp(model(ids[None, :30], labels=ids[None, :30]).loss.item())
    printed = capsys.readouterr().out
    assert "tokens: 30 " in printed
    assert float(re.search(r"perplexity: ([0-9.]+)", printed).group(1)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("chunk_size", [1, 5, 64])
@pytest.mark.parametrize("overrides", [{}, dict(sliding_window=None)], ids=["window", "full-attention"])
def test_streaming_nll_equals_the_per_token_loss_of_one_full_forward(chunk_size, overrides):
    model = SWATForCausalLM(tiny_config(**overrides)).double().eval()
    tokens = torch.randint(0, 97, (2, 50))
    with torch.no_grad():
        logits = model(tokens).logits[:, :-1]
    expected = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none").float()
    torch.testing.assert_close(streaming_nll(model, tokens, chunk_size), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(streaming_nll(model, tokens[1], chunk_size), expected[1], rtol=0, atol=1e-6)


def test_streaming_nll_explains_bad_input():
    model = SWATForCausalLM(tiny_config()).eval()
    with pytest.raises(ValueError, match="n >= 2"):
        streaming_nll(model, torch.tensor([3]))
    with pytest.raises(ValueError, match="chunk_size"):
        streaming_nll(model, torch.tensor([3, 4]), chunk_size=0)
