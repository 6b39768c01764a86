#!/bin/sh
# Resumable: rerun this script; it continues from /work/runs/seq-ml1m/checkpoint.pt.
cd /work/wt-seq && PYTHONPATH=/work/wt-seq/src OMP_NUM_THREADS=1 exec nice -n 10 /work/main/.venv/bin/python -m mediarec.index.seq \
  /work/shared/data/ml-1m/lrurec-sequences.tsv --workdir /work/runs/seq-ml1m --threads 1 --epochs 200 --patience 20 \
  >> /work/runs/seq-ml1m/result.jsonl 2>> /work/runs/seq-ml1m/train.log
