import math

import pytest
import torch

from swat import SWATForCausalLM
from swat.cli import main
from swat.evaluation.length import evaluate_lengths, parse_lengths

from .conftest import read_outputs, tiny_config


def test_parse_lengths():
    assert parse_lengths("512,1k, 2K,1.5k,512") == [512, 1024, 1536, 2048]
    assert parse_lengths("1m") == [1024**2]
    for bad in ("", "12x", "1", "0.3k"):
        with pytest.raises(ValueError, match="length"):
            parse_lengths(bad)


def test_perplexity_per_length_is_the_mean_loss_of_consecutive_sequences():
    torch.manual_seed(0)
    model = SWATForCausalLM(tiny_config(97)).eval()
    tokens = torch.randint(0, 97, (200,))
    result = evaluate_lengths(model, tokens, [20, 64, 128, 400], max_tokens=128, batch_size=3, chunk_size=48)
    by_length = {row["length"]: row for row in result["lengths"]}
    for n, count in [(20, 6), (64, 2), (128, 1)]:
        with torch.no_grad():
            sequences = tokens[: count * n].view(count, n)
            logits = model(sequences, use_cache=False).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), sequences[:, 1:]).item()
        assert by_length[n]["sequences"] == count
        assert by_length[n]["ppl"] == pytest.approx(math.exp(loss), rel=1e-5)
    assert math.isnan(by_length[400]["ppl"]) and by_length[400]["sequences"] == 0
    assert result["bucket_length"] == 128
    assert [(b["start"], b["end"]) for b in result["buckets"]] == [(0, 19), (19, 63), (63, 127)]
    weighted = sum(b["nll"] * (b["end"] - b["start"]) for b in result["buckets"]) / 127
    assert weighted == pytest.approx(by_length[128]["nll"], rel=1e-9)


def test_text_shorter_than_every_length_is_a_clear_error():
    model = SWATForCausalLM(tiny_config(97)).eval()
    with pytest.raises(ValueError, match="fewer than the shortest length"):
        evaluate_lengths(model, torch.zeros(10, dtype=torch.long), [64])


def test_cli_writes_json_markdown_and_plot(tmp_path, swat_dir, softmax_dir, text_file):
    out = tmp_path / "out"
    code = main(["eval", "length", "--models", str(swat_dir), str(softmax_dir), "--text", str(text_file),
                 "--lengths", "32,64,128", "--max-tokens", "256", "--out", str(out)])
    assert code == 0
    results, markdown = read_outputs(out, "length")
    assert [r["model"] for r in results] == ["swat", "transformer"]
    assert [r["window"] for r in results] == [16, None]
    assert all(row["ppl"] > 1 for r in results for row in r["lengths"])
    assert "ppl @ 128" in markdown


def test_cli_rejects_a_malformed_length_list_with_a_usage_error(swat_dir, text_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "length", "--models", str(swat_dir), "--text", str(text_file), "--lengths", "256,2x"])
    assert exit_info.value.code == 2
    assert "cannot read the length '2x'" in capsys.readouterr().err
