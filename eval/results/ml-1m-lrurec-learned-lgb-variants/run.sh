#!/bin/sh
# LightGBM variants of the learned stage over ML-1M's windowed seq model; chosen on the learned
# stage's own held-out training positions (holdout_ndcg10 in home-1m/learned/*.json), never on test.
H=/work/runs/home-1m
cd /work/main
for v in A B C; do
  [ -f /work/runs/lgb/eval-$v/metrics.json ] && continue
  PYTHONPATH=/work/runs/lgb/src-$v/src MEDIAREC_HOME=$H OMP_NUM_THREADS=1 nice -n 5 .venv/bin/mediarec eval --dataset movielens-1m --data-dir ../shared/data \
    --protocol lrurec --systems learned --seq-epochs 60 --output /work/runs/lgb/eval-$v > /work/runs/lgb/eval-$v.log 2>&1
done
