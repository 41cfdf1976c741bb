"""``swat serve``: a SWAT model directory served by transformers' own OpenAI-compatible server, on
loopback, answers completion requests (plain and streamed) with the text greedy ``generate`` gives."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import swat
from swat import SWATForCausalLM
from swat.cli import main
from swat.models.loading import load_model
from tests.conftest import tiny_config

WORDS = ["the", "king", "and", "queen", "walk", "to", "castle", "where", "a", "fool", "sings", "of", "love", "war", "sky", "is", "blue"]
STARTUP_SECONDS = 240
PROMPT = "the king and"
NEW_TOKENS = 12


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny SWAT model with a word-level tokenizer, so that every token decodes to whole words
    (a byte-level one can stop inside a character, which a stream holds back)."""
    path = tmp_path_factory.mktemp("served")
    vocab = {word: index for index, word in enumerate(["<|endoftext|>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    SWATForCausalLM(tiny_config(vocab_size=len(vocab), eos_token_id=None, pad_token_id=0)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _post(url: str, body: dict) -> urllib.request.Request:
    return urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def server(model_dir):
    """``python -m swat.cli.serve DIR`` on 127.0.0.1 and a free port; stopped after the tests."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(swat.__file__).parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(
        [sys.executable, "-m", "swat.cli.serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
         "--device", "cpu", "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"swat serve exited with {process.returncode}:\n{process.stdout.read()}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"swat serve did not answer within {STARTUP_SECONDS} s")
                time.sleep(1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def greedy_text(model_dir) -> str:
    model, tokenizer = load_model(model_dir)
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    output = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)
    return tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True)


def _request(model_dir: Path, stream: bool) -> dict:
    return {"model": str(model_dir), "prompt": PROMPT, "max_tokens": NEW_TOKENS, "temperature": 0, "stream": stream}


def test_a_completion_is_the_greedy_continuation(server, model_dir, greedy_text):
    with urllib.request.urlopen(_post(f"{server}/completions", _request(model_dir, stream=False)), timeout=120) as reply:
        answer = json.load(reply)
    assert len(greedy_text.split()) >= NEW_TOKENS // 2  # the model said something: words, not end of text
    assert answer["choices"][0]["text"].strip() == greedy_text.strip()
    assert answer["usage"]["completion_tokens"] == NEW_TOKENS


def test_a_streamed_completion_is_the_greedy_continuation(server, model_dir, greedy_text):
    chunks = []
    with urllib.request.urlopen(_post(f"{server}/completions", _request(model_dir, stream=True)), timeout=120) as reply:
        for line in reply:
            line = line.decode().strip()
            if line.startswith("data:") and line != "data: [DONE]":
                chunks.append(json.loads(line.removeprefix("data:"))["choices"][0]["text"])
    assert len([chunk for chunk in chunks if chunk]) > 1  # streamed, not one piece
    assert "".join(chunks).strip() == greedy_text.strip()


def test_serve_refuses_what_is_not_a_model_directory(tmp_path, capsys):
    assert main(["serve", str(tmp_path)]) == 2
    assert "not a model directory" in capsys.readouterr().err
