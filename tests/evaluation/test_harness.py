import functools
import json
from pathlib import Path

import pytest
import torch
from lm_eval.api.instance import Instance

from swat import SWATForCausalLM
from swat.cli import main
from swat.evaluation.harness import SWATHarnessLM, harness_max_length
from swat.inference import streaming_nll
from swat.models.loading import load_model

from .conftest import read_outputs, tiny_config

DATA = Path(__file__).parent / "data"


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _lm(tokenizer, **overrides):
    torch.manual_seed(0)
    model = SWATForCausalLM(tiny_config(len(tokenizer), **overrides)).eval()
    return SWATHarnessLM(model, tokenizer=tokenizer)


def test_max_length_is_the_receptive_field_for_windowed_models():
    assert harness_max_length(tiny_config(97, sliding_window=16, num_hidden_layers=2,
                                          max_position_embeddings=8)) == 2 * 15 + 1
    assert harness_max_length(tiny_config(97, max_position_embeddings=128)) == 128
    assert harness_max_length(tiny_config(97, sliding_window=None, max_position_embeddings=128)) == 128


def test_truncating_to_the_receptive_field_changes_no_score(tokenizer):
    lm = _lm(tokenizer)
    context, continuation = torch.randint(0, len(tokenizer), (2, 120)).tolist()[0], [5, 9, 11]
    full = SWATHarnessLM(lm.model, tokenizer=tokenizer, max_length=10_000)._continuation_score(context, continuation)
    cut = lm._continuation_score(context, continuation)
    assert lm.max_length == 128 and cut[0] == pytest.approx(full[0], abs=1e-4)
    too_short = SWATHarnessLM(lm.model, tokenizer=tokenizer, max_length=20)._continuation_score(context, continuation)
    assert abs(too_short[0] - full[0]) > 1e-3


def test_continuation_score_is_the_sum_of_token_log_probs(tokenizer):
    lm = _lm(tokenizer)
    ids = torch.randint(0, len(tokenizer), (30,))
    logprob, greedy = lm._continuation_score(ids[:25].tolist(), ids[25:].tolist())
    with torch.no_grad():
        log_probs = torch.log_softmax(lm.model(ids[None, :-1]).logits[0], dim=-1)
    expected = log_probs[24:].gather(-1, ids[25:, None]).sum().item()
    assert logprob == pytest.approx(expected, abs=1e-4)
    assert greedy == bool((log_probs[24:].argmax(-1) == ids[25:]).all())


@pytest.mark.parametrize("window", [16, None])
def test_rolling_loglikelihood_equals_the_streamed_document(tokenizer, text, window):
    lm = _lm(tokenizer, sliding_window=window, max_position_embeddings=64)
    document = text[:1500]
    (total,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (document,), 0)], disable_tqdm=True)
    ids = [tokenizer.eos_token_id] + lm.tok_encode(document)
    assert len(ids) > 2 * lm.max_length
    streamed = -streaming_nll(lm.model, torch.tensor(ids)).double().sum().item()
    if window is not None:  # the whole document through the rolling cache
        assert total == pytest.approx(streamed, rel=1e-6)
    else:  # disjoint windows of max_length: the later windows lose their context
        assert abs(total - streamed) > 1e-3


def test_generate_until_stops_at_the_stop_string(tokenizer):
    lm = _lm(tokenizer)
    prompt = "the king and queen"
    (out,) = lm.generate_until([Instance("generate_until", {}, (prompt, {"until": ["\n"], "max_gen_toks": 12}), 0)],
                               disable_tqdm=True)
    ids = lm.tok_encode(prompt)
    greedy = lm.model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)
    expected = tokenizer.decode(greedy[0, len(ids):]).split("\n")[0].split(tokenizer.eos_token)[0]
    assert out == expected


def _accuracies(model_dir, limit: int) -> tuple[float, float]:
    """acc and acc_norm on the first ``limit`` questions of the local task, from the model's own
    log-likelihood of each choice after the prompt (acc_norm divides it by the choice's characters)."""
    model, tokenizer = load_model(model_dir)
    right, right_norm = 0, 0
    for line in (DATA / "tiny_mc.jsonl").read_text().splitlines()[:limit]:
        doc = json.loads(line)
        context = f"Question: {doc['question']}\nAnswer:"
        start = len(tokenizer(context)["input_ids"])
        scores = []
        for choice in doc["choices"]:
            ids = torch.tensor(tokenizer(f"{context} {choice}")["input_ids"])
            with torch.no_grad():
                log_probs = torch.log_softmax(model(ids[None, :-1]).logits[0].double(), dim=-1)
            scores.append(log_probs[start - 1:].gather(-1, ids[start:, None]).sum().item())
        normed = [score / len(choice) for score, choice in zip(scores, doc["choices"], strict=True)]
        right += scores.index(max(scores)) == doc["label"]
        right_norm += normed.index(max(normed)) == doc["label"]
    return right / limit, right_norm / limit


def test_cli_runs_a_local_multiple_choice_task_offline(tmp_path, swat_dir, offline):
    out = tmp_path / "harness"
    code = main(["eval", "harness", "--model", str(swat_dir), "--tasks", "swat_tiny_mc",
                 "--include-path", str(DATA), "--limit", "6", "--out", str(out)])
    assert code == 0
    result, markdown = read_outputs(out, "harness")
    metrics = result["results"]["swat_tiny_mc"]
    assert result["n_samples"]["swat_tiny_mc"]["effective"] == 6
    assert (metrics["acc,none"], metrics["acc_norm,none"]) == pytest.approx(_accuracies(swat_dir, 6))
    assert result["max_length"] == 128
    assert "acc_norm" in markdown


def test_unknown_task_is_a_clear_error(swat_dir, offline, monkeypatch, capsys):
    import lm_eval.tasks

    # lm-eval's built-in index takes half a minute to build: search the local tasks only
    monkeypatch.setattr(lm_eval.tasks, "TaskManager", functools.partial(lm_eval.tasks.TaskManager,
                                                                        include_defaults=False))
    assert main(["eval", "harness", "--model", str(swat_dir), "--tasks", "no_such_task_xyz",
                 "--include-path", str(DATA)]) == 2
    assert "unknown lm-eval task" in capsys.readouterr().err
