"""The training loop: sliding window training of a SWAT causal LM on packed token windows (or of
any transformers causal LM that ``model.type`` names, on the same windows).

One optimiser step consumes the global batch of ``train.batch_size`` windows of
``data.seq_len + 1`` tokens (docs/spec.md section 3: ``seq_len`` is several windows ``w``), split
over processes and micro-batches; the loss is the mean next-token cross-entropy over all of them.
Training and held-out evaluation compute it through one function, ``window_loss``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, PreTrainedModel

from swat.data.corpus import default_data_dir
from swat.data.shards import TokenShards
from swat.data.tokenizer import load_tokenizer
from swat.errors import UserError
from swat.models import loading
from swat.models.compat import enable_activation_checkpointing
from swat.models.loss import next_token_loss, perplexity
from swat.ops.device import fast_low_precision_matmul
from swat.training import checkpoint as ckpt
from swat.training import distributed
from swat.training.config import SWAT_TYPE, TrainConfig
from swat.training.metrics import MetricsLogger, check_loggers, read_metrics
from swat.training.model_card import model_card
from swat.training.optim import build_optimizer, build_scheduler
from swat.training.run_dir import RunDir
from swat.training.sampler import (
    WindowSampler,
    document_segments,
    eval_starts,
    split_batch,
    stack_windows,
)
from swat.utils.io import DISK_FULL, naming_full_disk

# Config keys a resumed run may change (how it runs, not what it computes: the global batch of a
# step is the same for any number of processes and micro-batches); the rest must match.
RESUMABLE_CHANGES = ("name", "train.steps", "train.device", "train.max_bad_steps", "train.micro_batch_size",
                     "train.fsdp", "train.gradient_checkpointing", "train.bf16", "eval", "checkpoint", "log")
# Of those, the ones that change the arithmetic (summation order, precision, kernels): a resumed
# run continues correctly, but not bit-identical to an uninterrupted one.
NOT_BIT_EXACT_CHANGES = ("train.micro_batch_size", "train.device", "train.bf16", "train.fsdp")
# What to change when training goes non-finite (the model config's values are checked up front).
NON_FINITE_ADVICE = ("Lower optim.lr, set optim.grad_clip (e.g. 1.0), set train.bf16=false, or check the data; "
                     "resume from the last checkpoint with --resume.")


class NonFiniteLossError(RuntimeError):
    pass


def window_loss(model: torch.nn.Module, windows: torch.Tensor, *, eos_token_id: int | None = None,
                bf16: bool = False, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy of token windows ``[B, T + 1]``: the model reads the first ``T``
    tokens and is scored on the ``T`` that follow (``next_token_loss``, float32). With
    ``eos_token_id`` attention stays inside each document (``segment_ids``, which only SWAT
    takes); ``reduction`` as in ``next_token_loss`` (``"none"``: ``[B, T]``).

    A SWAT model computes the ``"mean"`` and ``"sum"`` losses itself from its ``shift_labels``,
    with the LM head chunk by chunk (``swat.models.loss.linear_cross_entropy``): no
    ``[B * T, vocab]`` logits exist. Other models, and ``"none"``, go through the logits."""
    inputs, targets = windows[:, :-1], windows[:, 1:]
    documents = {} if eos_token_id is None else {"segment_ids": document_segments(inputs, eos_token_id)}
    config = getattr(getattr(model, "module", model), "config", None)  # through a DDP wrapper
    with torch.autocast(windows.device.type, dtype=torch.bfloat16, enabled=bf16):
        if reduction != "none" and getattr(config, "model_type", None) == SWAT_TYPE:
            return model(input_ids=inputs, shift_labels=targets, num_items_in_batch=1 if reduction == "sum" else None,
                         skip_logits=True, use_cache=False, **documents).loss
        logits = model(input_ids=inputs, use_cache=False, **documents).logits
    return next_token_loss(logits, targets, reduction=reduction)


class Trainer:
    """Builds everything a run needs from a ``TrainConfig`` and trains it (``fit``).

    >>> run_dir = Trainer(load_config("tiny"), "runs/tiny").fit()
    """

    def __init__(self, config: TrainConfig, out_dir: str | Path, resume: bool = False, *, overwrite: bool = False,
                 accept_data_change: bool = False, command: str | None = None) -> None:
        self.config = config
        self.run_dir = RunDir(out_dir)
        self.command = command if command is not None else " ".join(sys.argv)
        self.env = distributed.setup(config.train.device)
        self._opened = None
        try:
            _, self.micro_steps = split_batch(config.train.batch_size, config.train.micro_batch_size,
                                              self.env.world_size)  # micro-batches per step of each process
            check_loggers(config.log.tensorboard, config.log.wandb)
            self.data_dir = resolve_data_dir(config.data.dir)
            self.train_tokens = TokenShards(self.data_dir, config.data.train_split)
            self.eos_token_id = self.train_tokens.eos_token_id
            self.data_fingerprint = data_fingerprint(self.train_tokens.manifest)
            self.tokenizer = self._load_tokenizer()
            self._build(resume, overwrite, accept_data_change)
        except BaseException:  # a refused launch: the run directory is left as it was (RunDir.open)
            self.close()
            distributed.teardown(self.env)
            raise

    def _build(self, resume: bool, overwrite: bool, accept_data_change: bool) -> None:
        config = self.config
        resume_from = self._open_run_dir(resume, overwrite)
        torch.manual_seed(config.train.seed)
        state = None
        if resume_from is None:
            self.model = AutoModelForCausalLM.from_config(self._model_config())
        else:
            state = ckpt.load_state(resume_from)
            self._check_resumed_state(state, resume_from, accept_data_change)
            self.model = _load_model(resume_from)
        self.step = int(state["step"]) if state is not None else 0
        if config.train.gradient_checkpointing:
            enable_activation_checkpointing(self.model)
        self.model.to(self.env.device)
        self.engine = distributed.wrap(self.model, self.env, config.train.fsdp)
        self.optimizer = build_optimizer(self.model, config.optim)
        self.scheduler = build_scheduler(self.optimizer, config.optim, config.train.steps)
        if state is not None:
            self._load_optimizer(state)
            _set_rng_state(state["rng"])
        self.bf16 = use_bf16(config.train.bf16, self.env.device)
        self.sampler = WindowSampler(self.train_tokens, config.data.seq_len, config.train.batch_size, config.train.seed)
        self.eval_tokens = self._eval_tokens()
        self._opened.start(config.to_yaml())  # every check has passed: the run begins in its directory
        self.bad_steps = 0
        self.skipped_steps = int(state["skipped_steps"]) if state is not None else 0
        self.metrics = MetricsLogger(
            self.run_dir, enabled=self.env.is_main, tensorboard=config.log.tensorboard, wandb=config.log.wandb,
            wandb_project=config.log.wandb_project, config=config.to_dict(),
            resume_step=self.step if resume else None,
        )
        self.last_eval_loss = _last_eval_loss(self.run_dir) if resume_from is not None else None

    def close(self) -> None:
        """Release the run directory (``fit`` does it when it ends)."""
        if self._opened is not None:
            self._opened.release()

    # ----------------------------------------------------------------------------- the loop
    def fit(self, until: int | None = None) -> Path:
        """Train up to step ``until`` (default: ``train.steps``), checkpointing, evaluating and
        logging on the way; at ``train.steps`` also write ``RUN_DIR/final``. Returns the run dir."""
        run = self.config.train
        until = run.steps if until is None else min(until, run.steps)
        tokens_per_step = run.batch_size * self.config.data.seq_len
        if self.step == run.steps and self._final_step() == run.steps:
            if self.env.is_main:
                print(f"{self.run_dir.root} is already trained to train.steps={run.steps}, its final model is in "
                      f"{self.run_dir.final}: nothing to do (raise train.steps to train further)")
            self.close()
            distributed.teardown(self.env)
            return self.run_dir.root
        if self.env.is_main:
            self._print_summary(tokens_per_step)
        bar = tqdm(total=run.steps, initial=self.step, disable=not self.env.is_main, unit="step",
                   dynamic_ncols=True)
        try:
            with naming_full_disk(DISK_FULL):  # metrics, checkpoints and the final model
                self._train_until(until, tokens_per_step, bar)
        finally:
            bar.close()
            self.metrics.close()
            self.close()
            distributed.teardown(self.env)
        return self.run_dir.root

    def _train_until(self, until: int, tokens_per_step: int, bar: tqdm) -> None:
        run = self.config.train
        window_start, window_steps = time.perf_counter(), 0
        while self.step < until:
            record = self.train_step()
            window_steps += 1
            elapsed = time.perf_counter() - window_start
            if window_steps == 1 and self.env.is_main:
                _announce_long_run(elapsed, run.steps - self.step)
            record["tokens_per_s"] = window_steps * tokens_per_step / elapsed
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:,.0f}")
            if self.step % self.config.log.every == 0 or self.step == until:
                record["tokens"] = self.step * tokens_per_step
                self.metrics.log(record)
                window_start, window_steps = time.perf_counter(), 0
            if _due(self.step, self.config.eval.every, run.steps) and self.eval_tokens is not None:
                self._log_eval()
                window_start, window_steps = time.perf_counter(), 0
            if _due(self.step, self.config.checkpoint.every, run.steps) or self.step == until:
                self.save_checkpoint()
                window_start, window_steps = time.perf_counter(), 0
        if self.step == run.steps:
            self.save_final()

    def train_step(self) -> dict[str, Any]:
        """One optimiser step on the global batch of ``self.step``; skipped (no update, optimiser
        state untouched) if the loss or the gradient norm is not finite."""
        run, optim = self.config.train, self.config.optim
        self.engine.train()
        total = torch.zeros((), device=self.env.device, dtype=torch.float64)
        for micro in range(self.micro_steps):
            batch = self.sampler.micro_batch(self.step, micro, run.micro_batch_size, self.env.rank,
                                             self.env.world_size).to(self.env.device)
            with distributed.gradient_sync(self.engine, micro == self.micro_steps - 1):
                loss = self._loss(self.engine, batch)
                (loss / self.micro_steps).backward()
            total += loss.detach().double()
        loss = (distributed.all_reduce_sum(total, self.env) / (self.micro_steps * self.env.world_size)).item()
        grad_norm = _norm_value(torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), optim.grad_clip if optim.grad_clip is not None else math.inf))
        record = {"step": self.step + 1, "loss": loss, "lr": self.optimizer.param_groups[0]["lr"],
                  "grad_norm": grad_norm}
        if math.isfinite(loss) and math.isfinite(grad_norm):
            self.optimizer.step()
            self.bad_steps = 0
        else:
            self._skip_step(loss, grad_norm)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        record["skipped_steps"] = self.skipped_steps
        return record

    def _skip_step(self, loss: float, grad_norm: float) -> None:
        self.bad_steps += 1
        self.skipped_steps += 1
        what = "loss" if not math.isfinite(loss) else "gradient norm"
        message = (f"step {self.step + 1}: non-finite {what} (loss {loss}, grad norm {grad_norm}); "
                   f"skipped without updating the weights ({self.bad_steps} in a row)")
        if self.env.is_main:
            tqdm.write(message)
        if self.bad_steps >= self.config.train.max_bad_steps:
            raise NonFiniteLossError(f"{message}: stopping after {self.bad_steps} non-finite steps in a row. "
                                     + NON_FINITE_ADVICE)

    def _loss(self, model: torch.nn.Module, windows: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """``window_loss`` with this run's document switch and precision."""
        eos = None if self.config.data.cross_documents else self.eos_token_id
        return window_loss(model, windows, eos_token_id=eos, bf16=self.bf16, reduction=reduction)

    # ----------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean next-token loss over the fixed held-out windows (``eval_starts``), shared out
        over processes; every process runs the same number of batches (FSDP needs it)."""
        starts = eval_starts(len(self.eval_tokens), self.config.data.seq_len, self.config.eval.windows)
        per_rank = -(-len(starts) // self.env.world_size)
        mine = np.arange(self.env.rank * per_rank, (self.env.rank + 1) * per_rank)
        weights = (mine < len(starts)).astype(np.float64)
        mine = np.minimum(mine, len(starts) - 1)
        self.engine.eval()
        total = torch.zeros((), device=self.env.device, dtype=torch.float64)
        size = self.config.eval.batch_size
        for first in range(0, per_rank, size):
            batch = stack_windows(self.eval_tokens, starts[mine[first:first + size]], self.config.data.seq_len + 1)
            losses = self._loss(self.engine, batch.to(self.env.device), reduction="none").mean(1)
            total += (losses.double() * torch.from_numpy(weights[first:first + size]).to(losses.device)).sum()
        return (distributed.all_reduce_sum(total, self.env) / len(starts)).item()

    def _log_eval(self) -> None:
        loss = self.evaluate()
        self.last_eval_loss = loss
        self.metrics.log({"step": self.step, "eval_loss": loss, "eval_ppl": perplexity(loss)})
        if self.env.is_main:
            tqdm.write(f"step {self.step}: held-out loss {loss:.4f} (perplexity {perplexity(loss):.2f})")

    # ----------------------------------------------------------------------------- saving
    def save_checkpoint(self) -> Path | None:
        """A resumable checkpoint of the current step (rank 0 writes; every process takes part)."""
        model_state, optimizer_state = self._full_states()
        path = None
        self._check_finite(model_state)
        if self.env.is_main:
            state = {"step": self.step, "skipped_steps": self.skipped_steps, "optimizer": optimizer_state,
                     "scheduler": self.scheduler.state_dict(), "rng": _rng_state(),
                     "data_fingerprint": self.data_fingerprint, "world_size": self.env.world_size}
            path = ckpt.save_checkpoint(self.run_dir.checkpoints, self.step, self.model, model_state, self.tokenizer,
                                        state, self.config.to_yaml(), self.model_card(),
                                        self.config.checkpoint.keep_last)
        distributed.barrier(self.env)
        return path

    def save_final(self) -> Path:
        """The trained model as ``RUN_DIR/final``: a Hugging Face model dir with its tokenizer."""
        model_state, _ = self._full_states(optimizer=False)
        self._check_finite(model_state)
        if self.env.is_main:
            ckpt.save_final(self.run_dir.final, self.model, model_state, self.tokenizer, self.config.to_yaml(),
                            self.model_card())
            tqdm.write(f"final model: {self.run_dir.final}")
        distributed.barrier(self.env)
        return self.run_dir.final

    def model_card(self) -> str:
        """The ``README.md`` of a model directory written now (``swat.training.model_card``)."""
        manifest = self.train_tokens.manifest
        data: dict[str, Any] = {"directory": str(self.data_dir), "vocab_size": manifest["vocab_size"]}
        if self.tokenizer is not None:
            trained = "train_bpe" in manifest.get("source", {}).get("tokenizer", {})
            data["tokenizer"] = (f"{manifest['tokenizer']}/ ({len(self.tokenizer)} entries"
                                 + (", a byte-level BPE trained on the train split)" if trained else ")"))
        for split, info in manifest["splits"].items():
            data[f"{split} split"] = f"{info['documents']:,} documents, {info['tokens']:,} tokens"
        return model_card(self.model.config, parameters=sum(p.numel() for p in self.model.parameters()),
                          data=data, tokens=self.step * self.config.train.batch_size * self.config.data.seq_len,
                          step=self.step, eval_loss=self.last_eval_loss, command=self.command)

    def _check_finite(self, model_state: dict[str, torch.Tensor]) -> None:
        """Refuse to save non-finite weights over the last good state (every process raises;
        ``model_state`` is the full state on the main process, empty on the others)."""
        bad = [name for name, tensor in model_state.items()
               if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
        if self._any_process(bool(bad)):
            raise NonFiniteLossError(f"step {self.step}: the weights are not finite ({len(bad)} tensors, e.g. "
                                     f"{bad[:1]}); nothing was saved. " + NON_FINITE_ADVICE)

    def _any_process(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any process (so that all of them take the same branch)."""
        return bool(distributed.all_reduce_sum(torch.tensor(float(flag), device=self.env.device), self.env).item())

    def _full_states(self, optimizer: bool = True):
        """Unsharded model (and optimiser) state dicts on the CPU, keyed by parameter names."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_state = get_model_state_dict(self.model, options=options)
        optimizer_state = get_optimizer_state_dict(self.model, self.optimizer, options=options) if optimizer else None
        return model_state, optimizer_state

    def _load_optimizer(self, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        if "scheduler" not in state:
            raise UserError(f"the last checkpoint of {self.run_dir.root} has no learning-rate schedule state "
                             "(it was written by an older swat): start a new run with --out")
        set_optimizer_state_dict(self.model, self.optimizer, state["optimizer"],
                                 options=StateDictOptions(full_state_dict=True))
        self.scheduler.load_state_dict(state["scheduler"])

    # ----------------------------------------------------------------------------- set-up
    def _model_config(self):
        config = self.config
        overrides: dict[str, Any] = {"eos_token_id": self.eos_token_id}
        if "vocab_size" not in config.model:
            overrides["vocab_size"] = self.train_tokens.vocab_size
        elif config.model["vocab_size"] < self.train_tokens.vocab_size:
            raise UserError(f"model.vocab_size={config.model['vocab_size']} is smaller than the data's vocabulary "
                             f"({self.train_tokens.vocab_size}, {self.data_dir}); remove model.vocab_size to use "
                             "the data's")
        # pad_token_id stays unset (a type's default too): the embedding would freeze that row
        # (padding_idx), and a tokenizer's pad token is often its EOS, which packed training must learn.
        if "pad_token_id" not in config.model:
            overrides["pad_token_id"] = None
        if self.tokenizer is not None and self.tokenizer.bos_token_id is not None and "bos_token_id" not in config.model:
            overrides["bos_token_id"] = self.tokenizer.bos_token_id
        return config.model_config(**overrides)

    def _load_tokenizer(self):
        name = self.train_tokens.manifest.get("tokenizer")
        if not name:
            return None
        tokenizer = load_tokenizer(self.data_dir / name)
        if len(tokenizer) != self.train_tokens.vocab_size:
            raise UserError(f"the tokenizer in {self.data_dir / name} has {len(tokenizer)} tokens, the manifest of "
                            f"{self.data_dir} says the data's vocabulary is {self.train_tokens.vocab_size}: the "
                            "tokenizer is not the one the data was prepared with; prepare the data again")
        return tokenizer

    def _eval_tokens(self) -> TokenShards | None:
        split, seq_len = self.config.data.eval_split, self.config.data.seq_len
        if split is None:
            return None
        splits = sorted(self.train_tokens.manifest["splits"])
        if split not in splits:
            raise UserError(f"{self.data_dir} has no split {split!r} for evaluation: set data.eval_split to one "
                             f"of {splits}, or to null for no held-out evaluation")
        tokens = TokenShards(self.data_dir, split)
        if len(tokens) < seq_len + 1:
            raise UserError(f"the {split!r} split of {self.data_dir} has {len(tokens)} tokens, fewer than one "
                             f"window of data.seq_len + 1 = {seq_len + 1}: use a shorter data.seq_len or "
                             "data.eval_split=null")
        return tokens

    def _open_run_dir(self, resume: bool, overwrite: bool) -> Path | None:
        """Take the run directory (``RunDir.open``, which writes nothing there until ``start``);
        returns the checkpoint to resume from (None: a fresh run) and keeps its saved config for
        ``_check_resumed_state``."""
        opened = RunDir.open(self.run_dir.root, resume=resume, overwrite=overwrite,
                             check_resumable=lambda saved, checkpoint: _check_resumable(self.config, saved, checkpoint),
                             is_main=self.env.is_main, any_process=self._any_process,
                             barrier=lambda: distributed.barrier(self.env))
        self._opened = opened
        return opened.checkpoint

    def _check_resumed_state(self, state: dict[str, Any], checkpoint: Path, accept_data_change: bool) -> None:
        step, steps = int(state["step"]), self.config.train.steps
        if step > steps:
            raise UserError(f"the last checkpoint ({checkpoint.name}) is at step {step}, beyond train.steps={steps}: "
                             f"set train.steps above {step} to train further, or use the run as it is")
        saved = state.get("data_fingerprint")
        if saved is not None and saved != self.data_fingerprint and not accept_data_change:
            raise UserError(f"the data in {self.data_dir} changed since {checkpoint.name} was written (it was "
                             "prepared again, from other inputs or settings): resume with the data the run was "
                             "trained on, or pass --accept-data-change to continue on the new data")
        saved_config = _flatten(self._opened.saved_config)
        now = _flatten(self.config.to_dict())
        changed = [f"{k}: {saved_config.get(k)!r} -> {now.get(k)!r}" for k in NOT_BIT_EXACT_CHANGES
                   if saved_config.get(k) != now.get(k)]
        if state.get("world_size", self.env.world_size) != self.env.world_size:
            changed.append(f"processes: {state['world_size']} -> {self.env.world_size}")
        if changed and self.env.is_main:
            print(f"note: resuming with {', '.join(changed)}: the run continues correctly, but its numbers will "
                  "differ slightly from an uninterrupted run (not bit-identical)")

    def _final_step(self) -> int | None:
        """The step of the run's ``final/`` model (its config's ``train.steps``), None if none."""
        if not self.run_dir.is_finished():
            return None
        try:
            return int(yaml.safe_load((self.run_dir.final / ckpt.CONFIG_FILE).read_text())["train"]["steps"])
        except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
            return None

    def _print_summary(self, tokens_per_step: int) -> None:
        config, model = self.config, self.model.config
        params = sum(p.numel() for p in self.model.parameters())
        window = getattr(model, "sliding_window", None)
        kind = f"window {window}" if config.model_type == SWAT_TYPE else f"{type(self.model).__name__}"
        print(f"run {self.run_dir.root}: {params / 1e6:.2f}M parameters, {kind}, "
              f"seq_len {config.data.seq_len}, {config.train.batch_size} x {config.data.seq_len} = "
              f"{tokens_per_step:,} tokens/step, {config.train.steps} steps, {self.env.world_size} process(es) "
              f"on {self.env.device}, bf16 {'on' if self.bf16 else 'off'}, data {self.data_dir} "
              f"({len(self.train_tokens):,} train tokens)")
        if config.optim.warmup_steps >= config.train.steps:
            print(f"warning: optim.warmup_steps={config.optim.warmup_steps} >= train.steps={config.train.steps}: the "
                  f"learning rate never reaches optim.lr={config.optim.lr}; lower optim.warmup_steps (e.g. to "
                  f"{max(config.train.steps // 10, 1)}) or raise train.steps")
        if window is not None and config.data.seq_len <= window:
            print(f"note: data.seq_len ({config.data.seq_len}) <= window ({window}): this is the "
                  "'train short' baseline; sliding window training uses seq_len = 4w..16w (docs/spec.md section 3)")


def train(config: TrainConfig, out_dir: str | Path | None = None, resume: bool = False,
          until: int | None = None, *, overwrite: bool = False, accept_data_change: bool = False,
          command: str | None = None) -> Path:
    """Train ``config`` into ``out_dir`` (default ``runs/NAME``) and return the run directory;
    the model ends in ``RUN_DIR/final``. ``until`` stops early at that step (with a checkpoint).
    ``resume`` continues the run in ``out_dir``; ``overwrite`` replaces it; ``accept_data_change``
    resumes even though the data directory was prepared again since the checkpoint."""
    out_dir = Path(out_dir) if out_dir is not None else Path("runs") / config.name
    trainer = Trainer(config, out_dir, resume=resume, overwrite=overwrite, accept_data_change=accept_data_change,
                      command=command)
    return trainer.fit(until=until)


def data_fingerprint(manifest: dict[str, Any]) -> str:
    """A digest of what a prepared data directory holds (its inputs, tokenizer and splits)."""
    described = {key: manifest.get(key) for key in ("source", "vocab_size", "eos_token_id", "splits")}
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def resolve_data_dir(data_dir: str | None) -> Path:
    """``data.dir``, or the Shakespeare directory that ``swat data shakespeare`` prepares."""
    if data_dir is not None:
        return Path(data_dir).expanduser()

    path = Path(default_data_dir())
    if not (path / "manifest.json").is_file():
        raise FileNotFoundError(f"no prepared data at {path} (the default data.dir): run `swat data shakespeare` "
                                "to prepare the embedded Shakespeare corpus, or set data.dir to a directory "
                                "made by `swat data prepare`")
    return path


def _check_resumable(config: TrainConfig, saved: dict[str, Any], checkpoint: Path) -> None:
    now, before = _flatten(config.to_dict()), _flatten(saved)
    changed = [key for key in sorted(set(now) | set(before)) if now.get(key) != before.get(key)
               and not any(key == k or key.startswith(k + ".") for k in RESUMABLE_CHANGES)]
    if changed:
        details = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed)
        raise UserError(f"cannot resume {checkpoint}: the config differs in {details}, which changes what the run "
                         f"computes. Resume without --config and --set to continue with the run's own config "
                         f"({RunDir(checkpoint.parent.parent).config}), or start a new run with another --out")


def _load_model(checkpoint: Path) -> PreTrainedModel:
    try:
        with ckpt.quiet_transformers_progress():
            return loading.load_weights(checkpoint, loading.load_config(checkpoint))
    except (ValueError, OSError) as error:  # the checkpoint is damaged
        raise UserError(f"cannot load the model of {checkpoint} ({str(error).splitlines()[0][:200]}): resume from "
                         f"an earlier checkpoint by writing its name into {checkpoint.parent / ckpt.LATEST}, or "
                         "start anew with --overwrite") from None


def _last_eval_loss(run_dir: RunDir) -> float | None:
    losses = [r["eval_loss"] for r in read_metrics(run_dir.metrics) if "eval_loss" in r] \
        if run_dir.metrics.is_file() else []
    return losses[-1] if losses else None


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key != "model":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


LONG_RUN_SECONDS = 24 * 3600


def _announce_long_run(step_seconds: float, remaining_steps: int) -> None:
    """Says, once a step has been timed, how long the remaining steps take when that is more than a
    day (a step count with a digit too many is accepted, but not silently)."""
    seconds = step_seconds * remaining_steps
    if seconds > LONG_RUN_SECONDS:
        print(f"note: a step takes {step_seconds:.2f} s here, so the remaining {remaining_steps:,} steps take about "
              f"{seconds / 86400:,.1f} days; Ctrl-C stops at any time and --resume continues from the last "
              "checkpoint")


def _due(step: int, every: int, total: int) -> bool:
    return step == total or (every > 0 and step % every == 0)


def use_bf16(setting: str | bool, device: torch.device) -> bool:
    if setting == "auto":
        return fast_low_precision_matmul(device) and (device.type != "cuda" or torch.cuda.is_bf16_supported())
    if setting and not fast_low_precision_matmul(device):
        print(f"note: train.bf16=true on {device}, which has no fast bf16 matmul (no AVX512-BF16/AMX): "
              "bf16 autocast will be much slower than fp32 here")
    return bool(setting)


def _norm_value(norm: torch.Tensor) -> float:
    if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2
        norm = norm.full_tensor()
    return float(norm)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
