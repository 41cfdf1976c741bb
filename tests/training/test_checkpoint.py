import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from swat.models import SWATForCausalLM
from swat.training import checkpoint as ckpt
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SWATForCausalLM(tiny_config())


class BrokenTokenizer:
    def save_pretrained(self, directory):
        raise OSError("disk full")


def _save(root, model, step, keep_last=2, tokenizer=None):
    state = {"step": step, "skipped_steps": 0, "optimizer": {"state": {"w": torch.arange(3.0)}, "param_groups": [{"lr": 0.1}]},
             "rng": {"torch": torch.get_rng_state()}}
    weights = {name: tensor + step for name, tensor in model.state_dict().items()}
    return ckpt.save_checkpoint(root, step, model, weights, tokenizer, state, "name: x\n", "# card\n", keep_last)


def test_keeps_the_last_k_and_points_latest_at_the_newest(tmp_path, model):
    for step in (10, 20, 30, 40):
        path = _save(tmp_path, model, step, keep_last=2)
        assert ckpt.latest_checkpoint(tmp_path) == path
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000030", "step_00000040"]
    latest = ckpt.latest_checkpoint(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(latest)  # a Hugging Face model directory
    expected = model.model.norm.weight + 40
    assert torch.equal(reloaded.model.norm.weight, expected)
    assert (latest / ckpt.CONFIG_FILE).read_text() == "name: x\n"
    state = ckpt.load_state(latest)  # weights_only=True
    assert state["step"] == 40 and torch.equal(state["optimizer"]["state"]["w"], torch.arange(3.0))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, model):
    good = _save(tmp_path, model, 10)
    with pytest.raises(OSError, match="disk full"):
        _save(tmp_path, model, 20, tokenizer=BrokenTokenizer())
    assert ckpt.latest_checkpoint(tmp_path) == good
    assert ckpt.list_checkpoints(tmp_path) == [good]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000010"]


def test_rewriting_a_step_and_the_final_model_replace_them(tmp_path, model):
    _save(tmp_path, model, 10)
    again = _save(tmp_path, model, 10, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000010"]
    assert torch.equal(load_file(again / "model.safetensors")["model.norm.weight"], model.model.norm.weight + 10)
    final = tmp_path / "final"
    for offset in (1, 2):
        weights = {name: tensor + offset for name, tensor in model.state_dict().items()}
        ckpt.save_final(final, model, weights, None, "name: y\n", "# card\n")
    assert torch.equal(load_file(final / "model.safetensors")["model.norm.weight"], model.model.norm.weight + 2)
    assert (final / ckpt.CONFIG_FILE).read_text() == "name: y\n" and not (final / ckpt.STATE_FILE).exists()


def test_no_checkpoint_and_dangling_pointer(tmp_path):
    assert ckpt.latest_checkpoint(tmp_path) is None
    (tmp_path / "latest").write_text("step_00000099\n")
    with pytest.raises(FileNotFoundError, match="missing or incomplete"):
        ckpt.latest_checkpoint(tmp_path)
