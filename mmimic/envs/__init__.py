"""TorchRL environments over a simulator (mmimic.sim): ``MuscleEnv`` (posture holding) and ``MuscleImitationEnv``
(tracking reference motions from a MotionLibrary)."""

from mmimic.envs.config import MuscleEnvConfig, MuscleImitationEnvConfig
from mmimic.envs.tasks import ImitationTaskConfig, PostureTaskConfig
from mmimic.envs.imitation_env import MuscleImitationEnv
from mmimic.envs.muscle_env import MuscleEnv

__all__ = ["ImitationTaskConfig", "MuscleEnv", "MuscleEnvConfig", "MuscleImitationEnv", "MuscleImitationEnvConfig",
           "PostureTaskConfig"]
