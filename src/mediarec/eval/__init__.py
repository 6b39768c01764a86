"""Offline evaluation on held-out users: protocol, split, metrics, stats, baselines, harness, report.

The public names are re-exported here: ``from mediarec.eval import evaluate, EvalProtocol,
leave_last_out, write_report``.
"""

from mediarec.eval.harness import ArrayScorer, EvalReport, Scorer, evaluate
from mediarec.eval.metrics import coverage, hit_at_k, mean_popularity, mrr, ndcg_at_k, rank_of_target, tie_keys, top_k
from mediarec.eval.protocol import EvalProtocol, builtin_protocols
from mediarec.eval.report import write_report
from mediarec.eval.split import Split, leave_last_out, sample_negatives, sample_users
from mediarec.eval.stats import bootstrap_ci, paired_bootstrap_p

__all__ = [
    "EvalProtocol", "builtin_protocols", "Split", "leave_last_out", "sample_users", "sample_negatives",
    "Scorer", "ArrayScorer", "EvalReport", "evaluate", "write_report",
    "hit_at_k", "ndcg_at_k", "mrr", "coverage", "mean_popularity", "tie_keys", "rank_of_target", "top_k",
    "bootstrap_ci", "paired_bootstrap_p",
]
