import pytest
import torch

from swat.training import checkpoint as ckpt


def _writer(marker: str):
    def write(directory):
        (directory / "model.txt").write_text(marker)

    return write


def _save(root, step, keep_last=2):
    state = {"step": step, "optimizer": {"state": {"w": torch.arange(3.0)}, "param_groups": [{"lr": 0.1}]},
             "rng": {"torch": torch.get_rng_state()}}
    return ckpt.save_checkpoint(root, step, _writer(f"model {step}"), state, "name: x\n", keep_last)


def test_keeps_the_last_k_and_points_latest_at_the_newest(tmp_path):
    for step in (10, 20, 30, 40):
        path = _save(tmp_path, step, keep_last=2)
        assert ckpt.latest_checkpoint(tmp_path) == path
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000030", "step_00000040"]
    latest = ckpt.latest_checkpoint(tmp_path)
    assert (latest / "model.txt").read_text() == "model 40"
    assert (latest / ckpt.CONFIG_FILE).read_text() == "name: x\n"
    state = ckpt.load_state(latest)  # weights_only=True
    assert state["step"] == 40 and torch.equal(state["optimizer"]["state"]["w"], torch.arange(3.0))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path):
    good = _save(tmp_path, 10)

    def broken(directory):
        (directory / "model.txt").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(tmp_path, 20, broken, {"step": 20}, "", keep_last=2)
    assert ckpt.latest_checkpoint(tmp_path) == good
    assert ckpt.list_checkpoints(tmp_path) == [good]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000010"]


def test_rewriting_a_step_replaces_it(tmp_path):
    _save(tmp_path, 10)
    ckpt.save_checkpoint(tmp_path, 10, _writer("again"), {"step": 10}, "", keep_last=2)
    assert (ckpt.latest_checkpoint(tmp_path) / "model.txt").read_text() == "again"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000010"]


def test_no_checkpoint_and_dangling_pointer(tmp_path):
    assert ckpt.latest_checkpoint(tmp_path) is None
    (tmp_path / "latest").write_text("step_00000099\n")
    with pytest.raises(FileNotFoundError, match="missing or incomplete"):
        ckpt.latest_checkpoint(tmp_path)
