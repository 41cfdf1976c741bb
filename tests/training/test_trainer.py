import math

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from swat.cli import main
from swat.training import NonFiniteLossError, Trainer, load_config
from swat.training.sampler import document_segments, stack_windows
from swat.utils import block_cache
from tests.training.conftest import eval_losses, run_config, train_losses


def test_cli_training_learns_and_saves_a_loadable_model(data_dir, tmp_path, monkeypatch):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(run_config(data_dir, eval={"every": 15})))
    out = tmp_path / "run"
    monkeypatch.delenv(block_cache.DISABLE_ENV, raising=False)
    monkeypatch.setattr(block_cache, "DEFAULT_MIN_BYTES", 1)  # every tensor of the run through the block cache
    hits = block_cache.block_cache_stats().hits
    assert main(["train", "--config", str(config), "--set", "train.steps=30", "optim.warmup_steps=3",
                 "--out", str(out)]) == 0
    assert block_cache.block_cache_stats().hits > hits + 1000 and not block_cache.block_cache_stats().installed
    losses = [loss for _, loss in train_losses(out)]
    assert len(losses) == 30
    assert losses[0] > math.log(286) - 0.5  # starts near uniform over the vocabulary
    assert sum(losses[-5:]) / 5 < losses[0] - 2.5  # the repetitive corpus is learnt
    (_, middle), (_, last) = eval_losses(out)
    assert last < middle < math.log(286) - 3.0  # held-out loss falls too

    tokenizer = AutoTokenizer.from_pretrained(out / "final")
    model = AutoModelForCausalLM.from_pretrained(out / "final").eval()
    prompt = tokenizer("the cat sat on the", return_tensors="pt")
    text = tokenizer.decode(model.generate(**prompt, max_new_tokens=3, do_sample=False)[0])
    assert text.startswith("the cat sat on the ") and len(text) > len("the cat sat on the ")
    checkpoint = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    reloaded = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    assert torch.equal(reloaded(**prompt).logits, model(**prompt).logits)  # the last checkpoint is the final model
    assert AutoTokenizer.from_pretrained(checkpoint).eos_token_id == model.config.eos_token_id

    card = (out / "final" / "README.md").read_text()  # the model card of every model directory
    params = sum(p.numel() for p in model.parameters())
    assert f"# SWAT language model ({params / 1e6:.2f}M parameters)" in card
    assert "- steps: 30, tokens: 3,840" in card  # 30 steps x 4 windows x 32 tokens
    assert f"- final held-out loss: {last:.4f} (perplexity {math.exp(last):.2f})" in card
    assert f"- command: `swat train --config {config} --set train.steps=30 optim.warmup_steps=3 --out {out}`" in card
    assert f"| directory | `{data_dir}` |" in card and "| train split | `60 documents, " in card
    assert "| tokenizer | `tokenizer/ (286 entries)` |" in card
    assert "| `sliding_window` | `8` |" in card
    assert "- steps: 30," in (checkpoint / "README.md").read_text()


def test_resume_continues_exactly(data_dir, tmp_path):
    """6 steps in one go == 3 steps, stop, resume, 3 more: identical losses, evals and weights."""
    config = load_config(run_config(data_dir))
    whole = Trainer(config, tmp_path / "whole").fit()
    Trainer(config, tmp_path / "halves").fit(until=3)
    assert [s for s, _ in train_losses(tmp_path / "halves")] == [1, 2, 3]
    halves = Trainer(config, tmp_path / "halves", resume=True).fit()
    print("\none go:", train_losses(whole), "\nresumed:", train_losses(halves))
    assert train_losses(halves) == train_losses(whole) and len(train_losses(whole)) == 6
    assert eval_losses(halves) == eval_losses(whole)
    a = AutoModelForCausalLM.from_pretrained(whole / "final").state_dict()
    b = AutoModelForCausalLM.from_pretrained(halves / "final").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_dir_is_not_overwritten_and_resume_checks_the_config(data_dir, tmp_path):
    config = load_config(run_config(data_dir, train={"steps": 2}))
    Trainer(config, tmp_path / "run").fit()
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(config, tmp_path / "run")
    changed = load_config(run_config(data_dir, train={"steps": 2}, optim={"lr": 0.5}))
    with pytest.raises(ValueError, match=r"optim.lr: 0.01 -> 0.5"):
        Trainer(changed, tmp_path / "run", resume=True)
    longer = load_config(run_config(data_dir, train={"steps": 4}))
    Trainer(longer, tmp_path / "run", resume=True).fit()  # more steps is allowed
    assert [s for s, _ in train_losses(tmp_path / "run")] == [1, 2, 3, 4]


def test_resume_without_a_config_continues_with_the_runs_own(data_dir, tmp_path, capsys):
    """``swat train --out RUN --resume`` continues with RUN/config.yaml (the --set overrides the run
    was started with included): the same losses as the run uninterrupted; --set goes on top of it,
    and a change of what the run computes is refused."""
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(run_config(data_dir, train={"steps": 4}, eval={"every": 2})))
    overrides = ["model.hidden_size=16", "optim.lr=0.02"]
    whole, out = tmp_path / "whole", tmp_path / "run"
    assert main(["train", "--config", str(config), "--set", *overrides, "--out", str(whole)]) == 0
    Trainer(load_config(config, overrides), out).fit(until=2)  # stopped after step 2
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert train_losses(out) == train_losses(whole) and eval_losses(out) == eval_losses(whole)
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--set", "optim.lr=0.5"]) == 2
    error = capsys.readouterr().err
    assert "optim.lr: 0.02 -> 0.5" in error and "Resume without --config and --set" in error
    assert main(["train", "--out", str(out), "--resume", "--set", "train.steps=5"]) == 0  # further, same config
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["hidden_size"] == 16 and saved["optim"]["lr"] == 0.02 and saved["train"]["steps"] == 5
    assert [s for s, _ in train_losses(out)] == [1, 2, 3, 4, 5]
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "holds no run swat started" in capsys.readouterr().err and not (tmp_path / "none").exists()


def _snapshot(trainer):
    params = [p.detach().clone() for p in trainer.model.parameters()]
    state = [{k: v.clone() for k, v in s.items()} for s in trainer.optimizer.state.values()]
    return params, state


def _same(a, b):
    (pa, sa), (pb, sb) = a, b
    return all(torch.equal(x, y) for x, y in zip(pa, pb, strict=True)) and len(sa) == len(sb) and all(
        torch.equal(x[k], y[k]) for x, y in zip(sa, sb, strict=True) for k in x)


def test_non_finite_steps_are_skipped_then_stop_the_run(data_dir, tmp_path):
    trainer = Trainer(load_config(run_config(data_dir, train={"max_bad_steps": 3})), tmp_path / "run")
    trainer.train_step()
    poison = {"loss": False, "grad": False}
    trainer.model.model.norm.register_forward_hook(lambda m, i, out: out * math.nan if poison["loss"] else out)
    trainer.model.model.norm.weight.register_hook(lambda g: g * math.inf if poison["grad"] else g)

    poison["loss"] = True
    before = _snapshot(trainer)
    record = trainer.train_step()
    assert math.isnan(record["loss"]) and record["skipped_steps"] == 1 and trainer.step == 2
    assert _same(before, _snapshot(trainer))  # no update, optimiser state untouched
    assert all(p.grad is None for p in trainer.model.parameters())

    poison["loss"], poison["grad"] = False, True
    record = trainer.train_step()
    assert math.isfinite(record["loss"]) and not math.isfinite(record["grad_norm"])
    assert trainer.bad_steps == 2 and _same(before, _snapshot(trainer))

    poison["grad"] = False
    trainer.train_step()  # a good step updates and resets the count of bad steps in a row
    assert trainer.bad_steps == 0 and trainer.skipped_steps == 2 and not _same(before, _snapshot(trainer))

    poison["loss"] = True
    trainer.train_step()
    trainer.train_step()
    with pytest.raises(NonFiniteLossError, match="3 non-finite steps in a row.*Lower optim.lr"):
        trainer.train_step()


def test_document_switch_keeps_attention_inside_documents(data_dir, tmp_path):
    crossing = Trainer(load_config(run_config(data_dir)), tmp_path / "a")
    separate = Trainer(load_config(run_config(data_dir, data={"cross_documents": False})), tmp_path / "b")
    starts = crossing.train_tokens.document_spans()[1:3, 0] - 10  # windows across a document start
    batch = stack_windows(crossing.train_tokens, starts, crossing.config.data.seq_len + 1)
    eos = crossing.eos_token_id
    assert (batch[:, :10] == eos).any(dim=1).all()
    segments = document_segments(batch[:, :-1], eos)
    with torch.no_grad():
        model = separate.model
        logits = model(input_ids=batch[:, :-1], segment_ids=segments, use_cache=False).logits
        expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        assert torch.equal(separate._loss(model, batch), expected)
        assert not torch.allclose(crossing._loss(crossing.model, batch), expected)
        per_token = separate._loss(model, batch, reduction="none")  # the held-out evaluation's reduction
        assert per_token.shape == (len(batch), batch.shape[1] - 1)
        torch.testing.assert_close(per_token.mean(), expected)


def test_missing_default_data_says_which_command_prepares_it(monkeypatch, tmp_path):
    from swat.training.trainer import resolve_data_dir

    monkeypatch.setenv("SWAT_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="swat data shakespeare"):
        resolve_data_dir(None)
    assert resolve_data_dir("~/x") == resolve_data_dir("~/x").expanduser()


def test_evaluation_split_is_checked_or_switched_off(data_dir, tmp_path):
    with pytest.raises(ValueError, match="no split 'valid'.*'heldout', 'train'"):
        Trainer(load_config(run_config(data_dir, data={"eval_split": "valid"})), tmp_path / "a")
    with pytest.raises(ValueError, match="fewer than one window"):
        Trainer(load_config(run_config(data_dir, data={"seq_len": 600})), tmp_path / "b")
    run_dir = Trainer(load_config(run_config(data_dir, data={"eval_split": None}, train={"steps": 2})),
                      tmp_path / "c").fit()
    assert eval_losses(run_dir) == [] and len(train_losses(run_dir)) == 2


@pytest.mark.parametrize("refused, message", [
    ({"data": {"eval_split": "valid"}}, "no split 'valid'"),  # found once the run directory is taken
    ({"model": {"vocab_size": 10}}, "smaller than the data's vocabulary"),
    ({"train": {"batch_size": 4, "micro_batch_size": 3}}, "must be a multiple of train.micro_batch_size"),
])
def test_a_refused_launch_leaves_nothing_that_blocks_the_corrected_one(data_dir, tmp_path, refused, message):
    out = tmp_path / "runs" / "new"
    with pytest.raises(ValueError, match=message):
        Trainer(load_config(run_config(data_dir, **refused)), out)
    assert not out.exists()
    run_dir = Trainer(load_config(run_config(data_dir, train={"steps": 1})), out).fit()  # no --overwrite needed
    assert len(train_losses(run_dir)) == 1


def test_bf16_autocast_trains_close_to_fp32(data_dir, tmp_path):
    runs = {}
    for bf16 in (False, True):
        config = load_config(run_config(data_dir, train={"steps": 2, "bf16": bf16}, eval={"every": 0}))
        trainer = Trainer(config, tmp_path / str(bf16))
        assert trainer.bf16 is bf16
        runs[bf16] = train_losses(trainer.fit()) + eval_losses(trainer.run_dir.root)
    assert [loss for _, loss in runs[True]] == pytest.approx([loss for _, loss in runs[False]], rel=2e-2)
    assert runs[True] != runs[False]  # bf16 really ran


def test_a_checkpoint_without_schedule_state_is_refused_clearly(data_dir, tmp_path):
    from swat.training import checkpoint as ckpt

    config = load_config(run_config(data_dir, train={"steps": 4}))
    Trainer(config, tmp_path / "run").fit(until=2)
    latest = ckpt.latest_checkpoint(tmp_path / "run" / "checkpoints")
    state = ckpt.load_state(latest)
    del state["scheduler"]
    torch.save(state, latest / ckpt.STATE_FILE)
    with pytest.raises(ValueError, match="no learning-rate schedule state"):
        Trainer(config, tmp_path / "run", resume=True)


def test_non_finite_weights_are_never_saved(data_dir, tmp_path):
    trainer = Trainer(load_config(run_config(data_dir, train={"steps": 2})), tmp_path / "run")
    trainer.fit(until=1)
    with torch.no_grad():
        trainer.model.model.norm.weight[0] = math.nan
    with pytest.raises(NonFiniteLossError, match="weights are not finite .*nothing was saved. Lower optim.lr"):
        trainer.save_final()
    with pytest.raises(NonFiniteLossError, match="weights are not finite"):
        trainer.save_checkpoint()
    assert not (tmp_path / "run" / "final").exists()
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["latest", "step_00000001"]


def test_a_model_config_that_would_break_training_is_refused_by_its_key(data_dir):
    with pytest.raises(ValueError, match=r"invalid model section: model.rope_theta must be a finite number > 0"):
        load_config(run_config(data_dir, model={"rope_theta": -1.0}, train={"steps": 4}))
