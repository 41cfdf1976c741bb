#!/usr/bin/env bash
# The main job on the embedded default, from a fresh machine: install, fetch the Shakespeare corpus,
# train its tokenizer, train the tiny SWAT model, evaluate it on held-out plays, generate text.
# Every step is an ordinary `swat` command, printed as it runs, quoted so that it pastes into a shell
# (from the repository root). Run it again and it continues: an interrupted training resumes, a
# finished one is kept (RUN=runs/other trains another).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/quickstart}
SWAT=.venv/bin/swat

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
# a word as a shell reads it back: bare if it is plain, else in single quotes
quote() {
  if [[ $1 =~ ^[A-Za-z0-9_./=:,+@%-]+$ ]]; then printf '%s' "$1"; else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}
show() { local word line=""; for word in "$@"; do line+="$(quote "$word") "; done; printf '%s\n' "${line% }"; }
run() { printf '$ '; show "$@"; "$@"; }

step "install (.venv, torch 2.13.0)"
bash scripts/setup.sh

# Threads: torch starts one per core in every process; where other work shares the cores, those
# threads wait on each other and a step can take many times longer (measured: the tiny model's
# training fell from ~9,000 to 200-600 tokens/s on a loaded 2-core machine; 112 s in all with one thread).
cores=$(nproc)
load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if [ -n "${OMP_NUM_THREADS:-}" ]; then
  echo "threads: OMP_NUM_THREADS=$OMP_NUM_THREADS (yours)"
elif awk -v load="$load" 'BEGIN { exit !(load >= 1) }'; then
  export OMP_NUM_THREADS=1
  echo "threads: the machine is busy (load $load on $cores cores): one thread per process (OMP_NUM_THREADS=1)"
else
  echo "threads: the machine is idle (load $load on $cores cores): torch uses all $cores cores; where other work" \
       "shares them, prefix the commands with OMP_NUM_THREADS=1"
fi
DATA=$(.venv/bin/python -c "from swat.data.corpus import default_data_dir; print(default_data_dir())")

step "corpus: the complete works of Shakespeare, a byte-level BPE, token shards (cached)"
run "$SWAT" data shakespeare

step "train the tiny SWAT model (sigmoid sliding-window attention, balanced ALiBi + RoPE)"
if [ -f "$RUN/final/config.json" ]; then
  echo "$RUN already holds a finished run (an earlier quickstart): its model is evaluated again below."
  echo "To train a new one: rm -r $(quote "$RUN"), or RUN=runs/other bash scripts/quickstart.sh"
elif [ -n "$(ls -A "$RUN" 2>/dev/null)" ]; then
  echo "$RUN holds an unfinished run (an interrupted quickstart): continuing it from its last checkpoint"
  run "$SWAT" train --config tiny --out "$RUN" --resume
else
  run "$SWAT" train --config tiny --out "$RUN"
fi

step "held-out perplexity against context length (training length 256, window 64)"
run "$SWAT" eval length --models "$RUN/final" --text "$DATA" --lengths 256,1k,4k,16k \
    --max-tokens 32768 --train-length 256 --out "$RUN/eval"

step "generate from a prompt (rolling KV cache)"
run "$SWAT" generate --model "$RUN/final" --prompt "KING HENRY. Now, lords," --max-new-tokens 120 --seed 0
echo

step "done"
cat <<MSG
model (a Hugging Face model dir with its tokenizer):  $RUN/final
training log (JSON lines):                            $RUN/metrics.jsonl
checkpoints:                                          $RUN/checkpoints/
evaluation (table, JSON, plot):                       $RUN/eval/length.md  $RUN/eval/length.png

The commands above run as printed from $(pwd). In a new shell, first
  cd $(quote "$(pwd)") && source .venv/bin/activate
and then swat (and torchrun) are on your PATH; or write .venv/bin/swat as above.

next:
MSG
next() { printf '  %-84s # %s\n' "$(show "${@:2}")" "$1"; }
next "greedy text" "$SWAT" generate --model "$RUN/final" --prompt "ROMEO." --max-new-tokens 40 --temperature 0
next "an OpenAI-compatible server" "$SWAT" serve "$RUN/final" --host 127.0.0.1 --port 8000
next "your own .txt files in my_texts/" "$SWAT" data prepare my_texts/ --out data/mine
next "a model on them" "$SWAT" train --config tiny --set data.dir=data/mine --out runs/mine
next "a bigger preset" "$SWAT" train --config small --out runs/small
next "the paper's ablations" "$SWAT" reproduce --minutes 60
