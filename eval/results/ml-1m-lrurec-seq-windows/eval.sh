#!/bin/sh
# After run.sh has stopped: serve its model to the harness by fingerprint, evaluate seq, then start
# the learned stage (its held-out seq model trains first; resumable: rerun this script).
set -e
H=/work/runs/home-1m
mkdir -p $H/seq/movielens-1m
[ -e $H/models ] || ln -s /work/main/.test-home/models $H/models
[ -e $H/seq/movielens-1m/75ae2435dcf310ab34ba ] || ln -s /work/runs/seq-ml1m-w200 $H/seq/movielens-1m/75ae2435dcf310ab34ba
cd /work/main
MEDIAREC_HOME=$H OMP_NUM_THREADS=1 .venv/bin/mediarec eval --dataset movielens-1m --data-dir ../shared/data \
  --protocol lrurec --systems pop,seq --output /work/runs/seq-ml1m-w200/eval-seq --quiet
MEDIAREC_HOME=$H OMP_NUM_THREADS=1 nice -n 5 .venv/bin/mediarec eval --dataset movielens-1m --data-dir ../shared/data \
  --protocol lrurec --systems learned,seq,hybrid --output /work/runs/seq-ml1m-w200/eval-learned \
  > /work/runs/seq-ml1m-w200/eval-learned.log 2>&1
