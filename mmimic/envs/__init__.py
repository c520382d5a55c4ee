"""TorchRL environments over WarpSim (``from mmimic.envs import MuscleEnv``)."""

from mmimic.envs.config import MuscleEnvConfig, PostureTaskConfig
from mmimic.envs.muscle_env import MuscleEnv

__all__ = ["MuscleEnv", "MuscleEnvConfig", "PostureTaskConfig"]
