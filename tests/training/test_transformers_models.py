"""The trainer trains any transformers causal LM that ``model.type`` names: train, resume exactly,
load ``final/``; and the model section of such a type is checked against its own config class."""

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM, Mamba2ForCausalLM

from swat.training import Trainer, load_config
from tests.training.conftest import eval_losses, run_config, train_losses

# Sizes that make a step take milliseconds on a CPU core.
MODELS = {
    "llama": {"type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64},
    "mamba2": {"type": "mamba2", "hidden_size": 32, "num_hidden_layers": 2, "state_size": 16, "head_dim": 16,
               "n_groups": 1, "expand": 2, "num_heads": 4, "chunk_size": 16},  # num_heads = expand * hidden / head_dim
}
CLASSES = {"llama": LlamaForCausalLM, "mamba2": Mamba2ForCausalLM}


def _config(data_dir, kind, **sections):
    raw = run_config(data_dir, **sections)
    raw["model"] = MODELS[kind]
    return load_config(raw)



@pytest.mark.parametrize("kind", sorted(MODELS))
def test_a_transformers_model_trains_resumes_exactly_and_loads(data_dir, tmp_path, kind):
    """6 steps in one go == 3 steps, stop, resume, 3 more; ``final/`` is that model type."""
    config = _config(data_dir, kind)
    whole = Trainer(config, tmp_path / "whole").fit()
    Trainer(config, tmp_path / "halves").fit(until=3)
    halves = Trainer(config, tmp_path / "halves", resume=True).fit()
    losses = [loss for _, loss in train_losses(whole)]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.5  # it learns
    assert train_losses(halves) == train_losses(whole) and eval_losses(halves) == eval_losses(whole)

    final = AutoModelForCausalLM.from_pretrained(whole / "final").eval()
    assert type(final) is CLASSES[kind] and final.config.hidden_size == 32
    assert final.config.vocab_size == 286 and final.config.pad_token_id is None  # the data's vocabulary
    resumed = AutoModelForCausalLM.from_pretrained(halves / "final").state_dict()
    assert all(torch.equal(value, resumed[key]) for key, value in final.state_dict().items())

    tokenizer = AutoTokenizer.from_pretrained(whole / "final")
    prompt = tokenizer("the cat sat on the", return_tensors="pt")
    assert final.generate(**prompt, max_new_tokens=3, do_sample=False).shape[1] == prompt["input_ids"].shape[1] + 3

    card = (whole / "final" / "README.md").read_text()
    assert f"# {kind} language model (" in card and f"`{CLASSES[kind].__name__}`" in card
    assert "SWAT" not in card and "sliding" not in card and "trust_remote_code" not in card
    assert "| `hidden_size` | `32` |" in card and "| `num_hidden_layers` | `2` |" in card
    assert ("| `state_size` | `16` |" in card) == (kind == "mamba2")
    saved = yaml.safe_load((whole / "config.yaml").read_text())
    assert saved["model"] == MODELS[kind]  # no SWAT preset is added to another type


def test_a_transformers_model_section_is_checked_against_its_config_class(data_dir):
    raw = run_config(data_dir)
    raw["model"] = {**MODELS["mamba2"], "state_sise": 8}
    with pytest.raises(ValueError, match=r"unknown config key 'state_sise' \(did you mean 'state_size'\?\) in "
                                         r"section 'model'.*Mamba2Config"):
        load_config(raw)
    raw["model"] = {"type": "mamab2", "hidden_size": 32}
    with pytest.raises(ValueError, match=r"model.type 'mamab2' is not swat nor a transformers causal LM type "
                                         r"\(did you mean 'mamba2'"):
        load_config(raw)
    raw["model"] = {**MODELS["mamba2"], "num_heads": 3}  # expand * hidden_size != num_heads * head_dim
    with pytest.raises(ValueError, match=r"invalid model section for model.type=mamba2: .*num_heads \* head_dim"):
        load_config(raw)
    raw["model"] = {**MODELS["llama"], "hidden_size": "wide"}
    with pytest.raises(ValueError, match=r"invalid model section for model.type=llama: .*'hidden_size' expected int"):
        load_config(raw)
    raw["model"] = {**MODELS["llama"], "preset": "tiny"}
    with pytest.raises(ValueError, match=r"model.preset names a SWAT size.*remove model.preset, or set model.preset=null"):
        load_config(raw)


def test_a_preset_recipe_trains_another_type_with_preset_null(data_dir):
    fields = [f"model.{key}={value}" for key, value in MODELS["mamba2"].items()]
    config = load_config("tiny", ["model.preset=null", *fields, f"data.dir={data_dir}"])
    assert config.model == MODELS["mamba2"] and config.optim == load_config("tiny").optim
    assert config.model_config().state_size == 16


def test_documents_kept_apart_is_refused_for_a_model_without_segment_ids(data_dir):
    with pytest.raises(ValueError, match=r"data.cross_documents=false .* only model.type=swat takes"):
        _config(data_dir, "llama", data={"cross_documents": False})


def test_swat_stays_the_default_type(data_dir):
    raw = run_config(data_dir)
    del raw["model"]
    assert load_config(raw).model == {"preset": "tiny"}
    raw["model"] = {"type": "swat", "sliding_window": 16}
    config = load_config(raw)
    assert config.model_type == "swat" and config.model_config().sliding_window == 16
    assert config.model == {"preset": "tiny", "type": "swat", "sliding_window": 16}
