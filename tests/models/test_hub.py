"""A saved SWAT directory in the tools users run, each in a fresh Python process that never
imports swat itself: transformers' Auto classes and pipeline with ``trust_remote_code=True``,
``transformers.Trainer``, and lm-evaluation-harness's ``hf`` model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from swat import SWATForCausalLM
from swat.cli import main
from swat.models.hub import AUTO_MAP, REMOTE_CODE
from tests.conftest import make_tokenizer, tiny_config

HARNESS_DATA = Path(__file__).parents[1] / "evaluation" / "data"
TEXT = " ".join(["the king and queen walk to the castle where a fool sings of love and war"] * 40)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    tokenizer = make_tokenizer(TEXT, vocab_size=300)
    torch.manual_seed(0)
    config = tiny_config(len(tokenizer), num_key_value_heads=4, eos_token_id=tokenizer.eos_token_id)
    path = tmp_path_factory.mktemp("hub") / "model"
    SWATForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _run(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter that is checked not to have imported swat beforehand."""
    guard = "import sys\nassert 'swat' not in sys.modules\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", guard + textwrap.dedent(code), *args], capture_output=True,
                          text=True, env=env, cwd=cwd, stdin=subprocess.DEVNULL, timeout=300)


def _json_output(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_directory_carries_auto_map_and_its_modules(model_dir):
    assert json.loads((model_dir / "config.json").read_text())["auto_map"] == AUTO_MAP
    for name, source in REMOTE_CODE.items():
        assert (model_dir / name).read_text() == source


def test_auto_classes_load_it_with_trust_remote_code(model_dir):
    ids = [[5, 9, 11, 3, 7, 2, 8, 1, 4, 6, 10, 12]]
    with torch.no_grad():
        want = SWATForCausalLM.from_pretrained(model_dir)(torch.tensor(ids)).logits
    got = _json_output(_run("""
        import json, torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        path, ids = sys.argv[1], json.loads(sys.argv[2])
        config = AutoConfig.from_pretrained(path, trust_remote_code=True)
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
        with torch.no_grad():
            logits = model(torch.tensor(ids)).logits
        print(json.dumps({"config": type(config).__name__, "model": type(model).__name__,
                          "window": config.sliding_window, "eos": tokenizer.eos_token, "logits": logits.tolist()}))
    """, str(model_dir), json.dumps(ids)))
    assert got["config"] == "SWATConfig" and got["model"] == "SWATForCausalLM" and got["window"] == 8
    assert got["eos"] == "<|endoftext|>"
    torch.testing.assert_close(torch.tensor(got["logits"]), want, atol=1e-5, rtol=1e-5)


def test_without_trust_remote_code_the_error_says_how(model_dir):
    result = _run("""
        from transformers import AutoModelForCausalLM
        AutoModelForCausalLM.from_pretrained(sys.argv[1])
    """, str(model_dir))
    assert result.returncode != 0 and "trust_remote_code=True" in result.stderr


def test_pipeline_generates_through_the_rolling_cache(model_dir):
    prompt = "the king and"
    want_model = SWATForCausalLM.from_pretrained(model_dir)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    want = tokenizer.decode(want_model.generate(ids, max_new_tokens=20, do_sample=False)[0])
    got = _json_output(_run("""
        import json
        from transformers import pipeline
        pipe = pipeline("text-generation", model=sys.argv[1], trust_remote_code=True, device="cpu")
        caches = []
        pipe.model.register_forward_pre_hook(
            lambda module, args, kwargs: caches.append(type(kwargs.get("cache", kwargs.get("past_key_values"))).__name__),
            with_kwargs=True)
        out = pipe(sys.argv[2], max_new_tokens=20, do_sample=False)
        print(json.dumps({"text": out[0]["generated_text"], "caches": sorted(set(caches))}))
    """, str(model_dir), prompt))
    assert got["text"] == want
    assert got["caches"] == ["RollingCache"]


def test_transformers_trainer_fine_tunes_saves_and_reloads(model_dir, tmp_path):
    pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate (an optional dependency)")
    got = _json_output(_run("""
        import json, torch
        from datasets import Dataset
        from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                                  TrainingArguments)
        source, out = sys.argv[1], sys.argv[2]
        tokenizer = AutoTokenizer.from_pretrained(source)
        tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(source, trust_remote_code=True)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        texts = ["the king and queen walk to the castle", "a fool sings of love and war"] * 8
        data = Dataset.from_dict({"text": texts}).map(lambda row: tokenizer(row["text"]), remove_columns=["text"])
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                                 max_steps=4, learning_rate=1e-2, logging_steps=1, save_strategy="no",
                                 report_to=[], use_cpu=True, bf16=False, seed=0)
        trainer = Trainer(model=model, args=args, train_dataset=data,
                          data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
        trainer.train()
        losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
        trainer.save_model(out + "/final")
        reloaded = AutoModelForCausalLM.from_pretrained(out + "/final", trust_remote_code=True)
        changed = any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
        same = all(torch.equal(v, reloaded.state_dict()[k]) for k, v in model.state_dict().items())
        print(json.dumps({"losses": losses, "changed": changed, "reloaded_equal": same}))
    """, str(model_dir), str(tmp_path / "trainer")))
    assert len(got["losses"]) == 4 and all(0 < loss < 100 for loss in got["losses"])
    assert got["losses"][-1] < got["losses"][0]
    assert got["changed"] and got["reloaded_equal"]
    assert (tmp_path / "trainer" / "final" / "modeling_swat.py").is_file()


def test_lm_eval_hf_model_scores_like_swat_eval_harness(model_dir, tmp_path, monkeypatch):
    pytest.importorskip("lm_eval", reason="lm-eval is the optional swat-lm[eval] dependency")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["eval", "harness", "--model", str(model_dir), "--tasks", "swat_tiny_mc", "--include-path",
                 str(HARNESS_DATA), "--out", str(tmp_path / "swat")]) == 0
    want = json.loads((tmp_path / "swat" / "harness.json").read_text())["results"]["swat_tiny_mc"]
    result = _run("""
        from lm_eval.__main__ import cli_evaluate
        sys.argv = ["lm_eval"] + sys.argv[1:]
        cli_evaluate()
    """, "--model", "hf", "--model_args", f"pretrained={model_dir},trust_remote_code=True,dtype=float32",
        "--tasks", "swat_tiny_mc", "--include_path", str(HARNESS_DATA), "--device", "cpu", "--batch_size", "1",
        "--output_path", str(tmp_path / "lm_eval"))
    assert result.returncode == 0, result.stderr[-3000:]
    (output,) = (tmp_path / "lm_eval").rglob("results_*.json")
    got = json.loads(output.read_text())["results"]["swat_tiny_mc"]
    for metric in ("acc,none", "acc_norm,none"):
        assert got[metric] == pytest.approx(want[metric], abs=1e-9), metric
