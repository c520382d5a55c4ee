"""Tasks for the env shell: each module holds one task's config, term functions, term tables and class."""

from mmimic.envs.tasks.base import Task
from mmimic.envs.tasks.imitation import ImitationTask, ImitationTaskConfig, TrackingState
from mmimic.envs.tasks.posture import PostureState, PostureTask, PostureTaskConfig

__all__ = ["ImitationTask", "ImitationTaskConfig", "PostureState", "PostureTask", "PostureTaskConfig", "Task",
           "TrackingState"]
