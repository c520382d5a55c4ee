"""Evaluation of trained policies (after ``rl/`` in the data path): ``mmimic eval`` plays every clip of a
motion set from its start to its end and writes tracking metrics (``metrics``: definitions; ``play``:
loading a run, playing clips, the report; ``video``: ``mmimic play`` and videos of a policy; ``rollout``: the
states of played walks as motion files; ``gait`` and ``emg``: ``mmimic gait``, walks against human
kinematics and EMG)."""

from mmimic.eval.metrics import METRICS, EpisodeAccumulator
from mmimic.eval.play import format_table, load_run, play_clips, run_eval, summarize, write_report

__all__ = ["METRICS", "EpisodeAccumulator", "format_table", "load_run", "play_clips", "run_eval", "summarize",
           "write_report"]
