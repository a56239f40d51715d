"""Train the PPO-text gate's independent judge: train_reward with --judge (model `judge`, seed + 1, only pairs the
reward model's data neither trains nor tests on). Its own job, so that it runs beside the reward model in the
retrain DAG and on Vertex AI under its own name.

Usage:
    .venv/bin/python -m training.train_judge --profile quick
"""
from __future__ import annotations

import sys

from training import train_reward

if __name__ == "__main__":
    sys.exit(train_reward.main(["--judge", *sys.argv[1:]]))
