import json

import pytest

from swat.errors import UserError
from swat.training.run_dir import RunDir


def test_layout_and_model_lookup(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.final == tmp_path / "run" / "final" and run.config.name == "config.yaml"
    assert RunDir.of_model(run.final) is None
    run.final.mkdir(parents=True)
    assert not run.is_finished()
    run.config.write_text("model: {}\n")
    (run.final / "config.json").write_text("{}")
    assert run.is_finished()
    assert RunDir.of_model(run.final).root == run.root.resolve()
    step = run.checkpoints / "step_00000010"
    step.mkdir(parents=True)
    assert RunDir.of_model(step).root == run.root.resolve()


def _start(root, config_yaml: str, **options) -> None:
    """A launch that passes every check: open, start, release."""
    opened = RunDir.open(root, **options)
    opened.start(config_yaml)
    opened.release()


def test_open_marks_locks_and_refuses_what_is_not_its_own(tmp_path):
    root = tmp_path / "run"
    opened = RunDir.open(root)
    opened.start("name: a\n")
    run = opened.run
    assert run.holds_run() and json.loads(run.marker.read_text())["swat_run"] and run.config.read_text() == "name: a\n"
    with pytest.raises(FileExistsError, match="in use by another training process"):
        RunDir.open(root, resume=True)
    opened.release()
    with pytest.raises(FileExistsError, match="already holds a run's files: pass --resume"):
        RunDir.open(root)
    identity = run.marker.read_text()
    _start(root, "name: b\n", resume=True)  # the same run, its identity kept
    assert run.marker.read_text() == identity and run.config.read_text() == "name: b\n"
    _start(root, "name: c\n", overwrite=True)  # a new run: a new identity
    assert run.marker.read_text() != identity


def test_a_launch_refused_before_it_starts_leaves_nothing_behind(tmp_path):
    """A launch refused after ``open`` (its config, the data, the number of processes) releases
    the directory before ``start``: the directory it made is gone, a run there is untouched."""
    root = tmp_path / "runs" / "new"
    RunDir.open(root).release()
    assert not root.exists() and (tmp_path / "runs").is_dir()
    _start(root, "name: a\n")  # the corrected launch: a new run
    RunDir.open(root, overwrite=True).release()  # refused before start: the old run is not replaced
    RunDir.open(root, resume=True).release()
    run = RunDir(root)
    assert run.holds_run() and run.config.read_text() == "name: a\n"
    assert sorted(path.name for path in root.iterdir()) == [".lock", ".swat-run", "config.yaml"]
    empty = tmp_path / "empty"
    empty.mkdir()
    RunDir.open(empty).release()  # a directory it did not make stays, empty
    assert empty.is_dir() and not list(empty.iterdir())


def test_without_the_marker_nothing_is_a_run(tmp_path):
    run = RunDir(tmp_path / "p")
    (run.final).mkdir(parents=True)
    (run.final / "report.txt").write_text("x")
    run.config.write_text("mine: true\n")
    assert not run.holds_run() and run.foreign_entries() == ["config.yaml", "final"]
    with pytest.raises(UserError, match="is not a run swat started"):
        RunDir.open(run.root, resume=True)
    assert run.config.read_text() == "mine: true\n" and not run.marker.exists()
    _start(tmp_path / "empty", "name: a\n", resume=True)  # nothing there: a run from step 0


def test_foreign_model_files_are_the_files_swat_does_not_write(tmp_path):
    run = RunDir(tmp_path / "run")
    step = run.checkpoints / "step_00000002"
    step.mkdir(parents=True)
    run.final.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
                 "training_config.yaml", "trainer_state.pt", "modeling_swat.py", "generation_config.json"):
        (step / name).write_text("")
    assert run.foreign_model_files() == []
    (step / "notes.txt").write_text("")
    (run.final / "tokenization_evil.py").write_text("")
    (run.final / "extra").mkdir()
    assert run.foreign_model_files() == ["checkpoints/step_00000002/notes.txt", "final/extra",
                                         "final/tokenization_evil.py"]
