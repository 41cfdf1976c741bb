import pytest
import yaml

from swat.errors import UserError
from swat.models.presets import PRESETS
from swat.training.config import DataConfig, OptimConfig, RunConfig, TrainConfig, load_config, preset_names


def test_every_preset_loads_and_trains_longer_than_its_window():
    assert preset_names() == sorted(PRESETS) == ["340m", "760m", "small", "tiny"]
    for name in preset_names():
        config = load_config(name)
        assert config.name == name
        assert config.model == {"preset": name}  # the architecture lives in swat.models.presets only
        window = config.model_config().sliding_window
        assert window == PRESETS[name]["sliding_window"]
        assert 4 * window <= config.data.seq_len <= 16 * window  # docs/spec.md section 3
        assert config.train.batch_size % config.train.micro_batch_size == 0


def test_dotted_overrides_are_parsed_by_type():
    config = load_config("tiny", ["model.sliding_window=128", "optim.lr=1e-3", "train.bf16=false",
                                  "optim.betas=[0.9, 0.99]", "optim.grad_clip=null", "data.dir=/some/where",
                                  "train.steps=7"])
    assert config.model["sliding_window"] == 128 and config.model_config().sliding_window == 128
    assert config.optim.lr == 1e-3 and isinstance(config.optim.lr, float)
    assert config.train.bf16 is False and config.train.steps == 7
    assert config.optim.betas == [0.9, 0.99] and config.optim.grad_clip is None
    assert config.data.dir == "/some/where"


def test_override_values_are_typed_by_the_field():
    config = load_config("tiny", ["optim.lr=1", "train.steps=3", "train.bf16=auto", "eval.every=0"])
    assert config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert config.train.steps == 3 and config.train.bf16 == "auto" and config.eval.every == 0


def test_yaml_file_and_dict_sources(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model: {preset: tiny, sliding_window: 32}\ndata: {seq_len: 128}\noptim: {lr: 2e-3}\n")
    config = load_config(path)
    assert config.name == "mine" and config.data.seq_len == 128 and config.optim.lr == 2e-3
    assert config.train.steps == 1000  # unset keys keep the defaults
    assert load_config(config.to_dict()) == config  # a saved config reads back equal
    saved = tmp_path / "saved.yaml"
    saved.write_text(config.to_yaml())
    assert yaml.safe_load(saved.read_text())["data"]["seq_len"] == 128  # plain YAML for other readers
    assert load_config(saved) == config  # its name key wins over the file name


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "did you mean 'lr'"),
    ("model.slidng_window=8", "did you mean 'sliding_window'"),
    ("trian.steps=3", "did you mean 'train'"),
    ("train.steps=abc", "'train.steps' must be int"),
    ("train.steps=2.5", "'train.steps' must be int"),
    ("optim.betas=[0.9, x]", r"'optim.betas\[1\]' must be float"),
    ("optim.grad_clip=x", "'optim.grad_clip' must be float or null"),
    ("train.gradient_checkpointing=maybe", "must be bool"),
    ("train.bf16=sometimes", "train.bf16 must be true, false or auto"),
    ("optim=3", "section 'optim' must be a mapping"),
    ("train.batch_size=12", r"train.batch_size \(12\) must be a multiple of train.micro_batch_size \(8\)"),
    ("optim.min_lr=1", "0 <= optim.min_lr <= optim.lr"),
    ("model.sliding_window=0", "sliding_window must be an int >= 1"),
    ("model.preset=huge", "model.preset must be one of"),
    ("model.use_rope=3", r"'model.use_rope' must be bool, got 3"),
    ("model.rope_theta=abc", r"'model.rope_theta' must be float or null|'model.rope_theta' must be float, got 'abc'"),
    ("train.device=gpu", "train.device must be auto, cpu, cuda or cuda:N"),
    ("train.seed=-1", "train.seed must be >= 0, got -1"),
    ("eval.every=-1", "eval.every must be >= 0"),
    ("checkpoint.keep_last=0", "checkpoint.keep_last must be >= 1"),
    ("log.every=0", "log.every must be >= 1"),
    ("steps", "must look like section.key=value"),
    ("optim.lr.x=1", "is a value, not a section"),
])
def test_bad_configs_say_what_to_change(override, message):
    with pytest.raises(UserError, match=message):
        load_config("tiny", [override])


def test_bad_config_files_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="one of the presets"):
        load_config("no-such-preset")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="holds a list: a training config is a YAML mapping"):
        load_config(listed)
    typo = tmp_path / "typo.yaml"
    typo.write_text("optim: {lr: 1.0e-3, warmup: 3}\n")
    with pytest.raises(ValueError, match="did you mean 'warmup_steps'"):
        load_config(typo)


def test_each_section_checks_itself():
    """The checks live in the sections' dataclasses (``__post_init__``), so a section made in
    Python is checked as one read from YAML is."""
    with pytest.raises(UserError, match=r"need optim.lr > 0 and 0 <= optim.min_lr <= optim.lr, got 0.1 and 0.2"):
        OptimConfig(lr=0.1, min_lr=0.2)
    with pytest.raises(UserError, match="train.batch_size .* must be a multiple of"):
        RunConfig(batch_size=6, micro_batch_size=4)
    with pytest.raises(UserError, match="data.seq_len must be >= 1"):
        DataConfig(seq_len=0)
    with pytest.raises(UserError, match="model.sliding_window must be an int >= 1"):
        TrainConfig(model={"sliding_window": 0})
    assert TrainConfig().model == {"preset": "tiny"}


def test_cli_reports_config_errors_without_a_traceback(capsys):
    from swat.cli import main

    assert main(["train", "--config", "tiny", "--set", "optim.lrr=1"]) == 2
    assert "did you mean 'lr'" in capsys.readouterr().err
    assert main(["train", "--config", "tiny", "--set", "train.steps=5", "--print-config"]) == 0
    assert "steps: 5" in capsys.readouterr().out


def test_set_takes_several_overrides_after_one_flag_or_one_per_flag(capsys):
    from swat.cli import main

    for argv in (["--set", "train.steps=5", "optim.lr=0.5"], ["--set", "train.steps=5", "--set", "optim.lr=0.5"]):
        assert main(["train", "--config", "tiny", *argv, "--print-config"]) == 0
        printed = yaml.safe_load(capsys.readouterr().out)
        assert printed["train"]["steps"] == 5 and printed["optim"]["lr"] == 0.5
