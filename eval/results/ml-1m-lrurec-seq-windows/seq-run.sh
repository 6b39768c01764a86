#!/bin/sh
# Resumable: rerun this script; it continues from /work/runs/seq-ml1m-w200/checkpoint.pt.
cd /work/runs/seq-ml1m-w200 && PYTHONPATH=/work/runs/seq-ml1m-w200/src OMP_NUM_THREADS=1 exec nice -n 5 /work/main/.venv/bin/python -m mediarec.index.seq \
  /work/shared/data/ml-1m/lrurec-sequences.tsv --workdir /work/runs/seq-ml1m-w200 --threads 1 --epochs 200 --patience 10 \
  >> /work/runs/seq-ml1m-w200/result.jsonl 2>> /work/runs/seq-ml1m-w200/train.log
