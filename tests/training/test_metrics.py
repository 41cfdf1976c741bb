import importlib.util
import json

import pytest

from swat.errors import UserError
from swat.training.metrics import MetricsLogger, read_metrics, truncate_metrics
from swat.training.run_dir import RunDir


def test_json_lines_and_truncation_on_resume(tmp_path):
    logger = MetricsLogger(RunDir(tmp_path))
    for step in range(1, 5):
        logger.log({"step": step, "loss": 1.0 / step})
    logger.close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4]
    truncate_metrics(tmp_path / "metrics.jsonl", 2)
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]
    MetricsLogger(RunDir(tmp_path), enabled=False).log({"step": 9})  # other ranks write nothing
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])


@pytest.mark.parametrize("backend, package", [("tensorboard", "tensorboard"), ("wandb", "wandb")])
def test_optional_backends_need_their_package(tmp_path, backend, package):
    if importlib.util.find_spec(package) is None:
        with pytest.raises(UserError, match=f"pip install {package}"):
            MetricsLogger(RunDir(tmp_path), **{backend: True})
    elif backend == "tensorboard":
        logger = MetricsLogger(RunDir(tmp_path), tensorboard=True)
        logger.log({"step": 1, "loss": 2.0})
        logger.close()
        assert any((tmp_path / "tensorboard").iterdir())
    else:
        assert MetricsLogger(RunDir(tmp_path), wandb=False)._wandb is None  # never started unless asked
