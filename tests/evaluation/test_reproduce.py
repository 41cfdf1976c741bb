import json
import math

import pytest

from swat.cli import main
from swat.data.shards import write_split
from swat.evaluation.reproduce import ablation_config, ablations, check_claims, extra_ablations
from swat.models import configuration_swat
from swat.training import load_config

from .conftest import make_text

SMALL = ["model.hidden_size=32", "model.intermediate_size=64", "model.num_hidden_layers=2",
         "model.num_attention_heads=4", "model.sliding_window=8", "data.seq_len=32", "train.batch_size=4",
         "train.micro_batch_size=2", "train.device=cpu", "train.bf16=false", "eval.windows=2", "eval.batch_size=2"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("data")
    tokenizer.save_pretrained(path / "tokenizer")
    for split, seed, count in (("train", 1, 20), ("heldout", 2, 3)):
        docs = [tokenizer(make_text(400, seed=seed * 100 + i))["input_ids"] for i in range(count)]
        write_split(path, split, docs, vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                    tokenizer="tokenizer")
    return path


def test_the_eight_configs_share_everything_but_attention(data_dir):
    base = load_config("tiny", [f"data.dir={data_dir}"])
    configs = {a.name: ablation_config(base, a, steps=50) for a in ablations(64)}
    assert len(configs) == 8
    tokens = {n: c.train.steps * c.train.batch_size * c.data.seq_len for n, c in configs.items()}
    assert len(set(tokens.values())) == 1
    assert {c.train.seed for c in configs.values()} == {base.train.seed}
    assert configs["swat-train-short"].data.seq_len == 64 and configs["swat"].data.seq_len == 256
    models = {n: c.model_config(vocab_size=300) for n, c in configs.items()}
    assert models["transformer++"].sliding_window is None and models["transformer++"].attention_activation == "softmax"
    assert models["softmax-swa"].sliding_window == 64
    assert models["swat"].alibi == "balanced" and models["swat"].use_rope
    assert not models["swat-no-rope"].use_rope
    assert models["sigmoid-swa-alibi"].alibi == "standard" and models["sigmoid-swa-rope"].alibi == "none"
    assert models["swat"].sigmoid_bias == pytest.approx(-math.log(64))  # SWATConfig's default
    assert models["sigmoid-swa-alibi"].sigmoid_bias == pytest.approx(-math.log(64))
    assert models["swat-no-bias"].sigmoid_bias == 0.0 and models["softmax-swa"].sigmoid_bias == 0.0
    extras = {a.name: ablation_config(base, a, steps=50).model_config(vocab_size=300) for a in extra_ablations(64)}
    assert extras["swat-retain-0.5"].slopes()[2:].tolist() == pytest.approx((-0.5 * models["swat"].slopes()[:2]).tolist())


def test_claims_are_computed_from_the_numbers():
    def row(name, ppl1, ppl16, sink):
        return {"name": name, "ppl@1x": ppl1, "ppl@16x": ppl16, "sink_ratio": sink}

    summary = [row("transformer++", 10.0, 30.0, 5.0), row("swat", 11.0, 11.0, 1.0),
               row("sigmoid-swa-alibi", 12.0, 12.5, 1.2), row("swat-no-bias", 11.5, 11.4, 1.0)]
    claims = check_claims({"summary": summary})
    assert [c["holds"] for c in claims] == [True, True, True, True]
    summary[1] = row("swat", 11.0, 20.0, 6.0)
    assert [c["holds"] for c in check_claims({"summary": summary})] == [False, False, False, False]
    summary[0] = row("transformer++", 10.0, 30.0, 1.5)  # no sink anywhere: nothing to remove
    assert check_claims({"summary": summary})[1]["holds"] is None


def test_cli_trains_and_evaluates_two_configs(tmp_path, data_dir, monkeypatch):
    out = tmp_path / "results"
    args = ["reproduce", "--steps", "3", "--out", str(out), "--data", str(data_dir), "--configs",
            "transformer++,swat", "--eval-tokens", "512", "--passkey-trials", "1"]
    for item in SMALL:
        args += ["--set", item]
    assert main(args) == 0
    result = json.loads((out / "reproduce.json").read_text())
    assert [row["name"] for row in result["summary"]] == ["transformer++", "swat"]
    assert [row["length"] for row in result["length"][0]["lengths"]] == [32, 64, 128, 256, 512]
    assert all(row["ppl@16x"] > 1 for row in result["summary"])
    assert result["settings"]["tokens_per_config"] == 3 * 4 * 32
    assert len(result["claims"]) == 2
    summary = (out / "summary.md").read_text()
    assert "ppl@16x" in summary and "## Claims" in summary
    for name in ("length", "passkey", "attention"):
        assert (out / f"{name}.png").is_file() and (out / f"{name}.md").is_file()
    assert (out / "runs" / "swat" / "final" / "config.json").is_file()
    assert main(args) == 0  # a second run reuses the trained models
    monkeypatch.setattr(configuration_swat, "bounded_retain_scale", lambda heads, window: 0.5)
    with pytest.raises(ValueError, match="other defaults"):  # but not once the defaults changed
        main(args)
    with pytest.raises(ValueError, match="--steps 3 to reuse it"):
        main([a if a != "3" else "4" for a in args])


def test_eval_length_reads_a_data_dir_and_the_training_length_of_a_run(tmp_path, data_dir):
    out = tmp_path / "results"
    args = ["reproduce", "--steps", "2", "--out", str(out), "--data", str(data_dir), "--configs", "swat",
            "--eval-tokens", "512", "--passkey-trials", "1"]
    for item in SMALL:
        args += ["--set", item]
    assert main(args) == 0
    from swat.evaluation.loading import training_length

    final = out / "runs" / "swat" / "final"
    assert training_length(final) == 32
    assert main(["eval", "length", "--models", str(final), "--text", str(data_dir), "--lengths", "32,64",
                 "--out", str(tmp_path / "length")]) == 0
    result = json.loads((tmp_path / "length" / "length.json").read_text())
    assert result[0]["model"] == "swat" and result[0]["lengths"][1]["sequences"] > 1
