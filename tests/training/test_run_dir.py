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
