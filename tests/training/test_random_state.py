"""Resume restores every random state the training draws from, so a run that draws random numbers
(dropout here) resumes exactly."""

import torch
from transformers import AutoModelForCausalLM

from swat.training import Trainer, load_config
from tests.training.conftest import run_config, train_losses

# A llama with attention dropout: every training step draws from the random number generator.
DROPOUT_MODEL = {"type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
                 "attention_dropout": 0.5}


def test_resume_restores_every_random_state(data_dir, tmp_path):
    raw = run_config(data_dir, train={"steps": 4}, eval={"every": 0}, checkpoint={"every": 2})
    config = load_config({**raw, "model": DROPOUT_MODEL})
    whole = Trainer(config, tmp_path / "whole").fit()
    after_whole = torch.get_rng_state()
    Trainer(config, tmp_path / "halves").fit(until=2)
    torch.manual_seed(12345)  # whatever the process did in between
    halves = Trainer(config, tmp_path / "halves", resume=True).fit()
    assert train_losses(halves) == train_losses(whole) and len(train_losses(whole)) == 4
    assert torch.equal(torch.get_rng_state(), after_whole)
    a = AutoModelForCausalLM.from_pretrained(whole / "final").state_dict()
    b = AutoModelForCausalLM.from_pretrained(halves / "final").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
