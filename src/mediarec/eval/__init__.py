"""Offline evaluation on held-out users: protocols, split, metrics, baselines and the harness."""
