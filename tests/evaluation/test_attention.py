import json

import pytest
import torch

from swat import SWATForCausalLM
from swat.cli import main
from swat.evaluation.attention import diagnose_attention, head_statistics

from .conftest import tiny_config


def test_head_statistics_of_known_weights():
    n, window = 10, 4
    delta = torch.arange(n)[:, None] - torch.arange(n)[None, :]
    visible = ((delta >= 0) & (delta < window)).double()
    uniform = (visible / visible.sum(-1, keepdim=True))[None, None]  # a softmax head with equal scores
    stats = head_statistics(uniform, window, sink_tokens=2)
    torch.testing.assert_close(stats["total_weight"], torch.ones(1, dtype=torch.float64))
    torch.testing.assert_close(stats["weight_variance"], torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(stats["sink_ratio"], torch.ones(1, dtype=torch.float64))
    # queries 2 and 3 see both sink tokens among 3 and 4 keys
    torch.testing.assert_close(stats["sink_share"], torch.tensor([(2 / 3 + 2 / 4) / 2], dtype=torch.float64))

    sink = torch.zeros(1, 1, n, n, dtype=torch.float64)
    sink[..., 0] = 0.3  # every query puts 0.3 on token 0 and 0.5 on itself: total 0.8
    sink = sink + 0.5 * torch.eye(n, dtype=torch.float64)
    stats = head_statistics(sink, None, sink_tokens=1)
    torch.testing.assert_close(stats["sink_share"], torch.full((1,), 0.3 / 0.8, dtype=torch.float64))
    assert stats["total_weight"].item() == pytest.approx(0.8)

    with pytest.raises(ValueError, match="no query sees"):
        head_statistics(uniform, 2, sink_tokens=3)


def test_diagnostics_read_the_weights_the_model_returns():
    model = SWATForCausalLM(tiny_config(97, num_hidden_layers=3)).eval()
    ids = torch.randint(0, 97, (1, 20))
    result = diagnose_attention(model, ids, sink_tokens=2)
    with torch.no_grad():
        weights = model(ids, output_attentions=True).attentions
    assert len(result["layers"]) == 3
    for layer, stats in zip(weights, result["layers"], strict=True):
        assert stats["total_weight"] == pytest.approx(layer.double().sum(-1).mean((0, 2)).tolist())


def test_softmax_weights_sum_to_one_and_sigmoid_ones_need_not():
    torch.manual_seed(0)
    ids = torch.randint(0, 97, (2, 40))
    softmax = SWATForCausalLM(tiny_config(97, attention_activation="softmax", alibi="none")).eval()
    sigmoid = SWATForCausalLM(tiny_config(97)).eval()
    soft, sig = diagnose_attention(softmax, ids), diagnose_attention(sigmoid, ids)
    assert len(soft["layers"]) == 2 and len(soft["layers"][0]["sink_share"]) == 4
    for layer in soft["layers"]:
        assert layer["total_weight"] == pytest.approx([1.0] * 4, abs=1e-6)  # float32 weights
    assert all(abs(t - 1.0) > 0.05 for layer in sig["layers"] for t in layer["total_weight"])


def test_cli_compares_two_models(tmp_path, swat_dir, softmax_dir, text_file):
    out = tmp_path / "attention"
    code = main(["diagnose", "attention", "--model", str(softmax_dir), str(swat_dir), "--text", str(text_file),
                 "--length", "64", "--sequences", "2", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "attention.json").read_text())
    assert [r["activation"] for r in results] == ["softmax", "sigmoid"]
    assert "sink share" in (out / "attention.md").read_text()
    assert (out / "attention.png").read_bytes()[:4] == b"\x89PNG"
