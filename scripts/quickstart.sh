#!/usr/bin/env bash
# The main job on the embedded default, from a fresh machine: install, fetch the Shakespeare corpus,
# train its tokenizer, train the tiny SWAT model, evaluate it on held-out plays, generate text.
# Every step is an ordinary `swat` command; they are printed as they run.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/quickstart}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "install (.venv, torch 2.13.0 CPU)"
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
DATA=$(python -c "from swat.data.corpus import default_data_dir; print(default_data_dir())")

step "corpus: the complete works of Shakespeare, a byte-level BPE, token shards (cached)"
run swat data shakespeare

step "train the tiny SWAT model (sigmoid sliding-window attention, balanced ALiBi + RoPE)"
run swat train --config tiny --out "$RUN"

step "held-out perplexity against context length (training length 256, window 64)"
run swat eval length --models "$RUN/final" --text "$DATA" --lengths 256,1k,4k,16k \
    --max-tokens 32768 --train-length 256 --out "$RUN/eval"

step "generate from a prompt (rolling KV cache)"
run swat generate --model "$RUN/final" --prompt "KING HENRY. Now, lords," --max-new-tokens 120 --seed 0
echo

step "done"
cat <<MSG
model (a Hugging Face model dir with its tokenizer):  $RUN/final
training log (JSON lines):                            $RUN/metrics.jsonl
checkpoints:                                          $RUN/checkpoints/
evaluation (table, JSON, plot):                       $RUN/eval/length.md  $RUN/eval/length.png

next:
  swat data prepare my_texts/ --out data/mine                          # your own text
  swat train --config tiny --set data.dir=data/mine --out runs/mine
  swat train --config small --out runs/small                            # a bigger preset
  torchrun --nproc_per_node=2 -m swat.cli.train --config small --out runs/small-ddp
  swat reproduce --minutes 60                                           # the paper's ablations
MSG
