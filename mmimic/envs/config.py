"""Options of the muscle environment and its posture-holding task (omegaconf-friendly dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from mmimic.embodiments import EmbodimentConfig


@dataclass
class PostureTaskConfig:
    """Hold a target posture with the muscles, sampled per episode around the model's default pose.

    reward = exp(-posture_scale * mean_j (q_j - q*_j)^2)          (joint posture, rad)
             + upright_weight * exp(-upright_scale * tilt^2)      (free root only, tilt in rad)
             - effort_weight * mean_m act_m^2                      (muscle effort)
    The episode terminates when the RMS joint error exceeds ``max_posture_error`` (rad) or, for a
    free-root model, when the root falls below ``fall_height_fraction`` of its start height; it is
    truncated after ``max_episode_steps`` control steps.
    """

    target_range: float = 0.1  # target = default + U(-r, r) * half joint range, clipped to the range
    reset_noise: float = 0.02  # rad (or m) of uniform noise on the start joint positions
    posture_scale: float = 4.0
    upright_weight: float = 0.5
    upright_scale: float = 2.0
    effort_weight: float = 0.1
    max_posture_error: float = 1.0
    fall_height_fraction: float = 0.6
    max_episode_steps: int = 500


@dataclass
class MuscleEnvConfig:
    """Everything ``MuscleEnv`` needs. ``model`` is the embodiment name (see ``mmimic.embodiments``)."""

    model: str = "arm26"
    num_envs: int = 16
    device: str = "cpu"  # cpu, cuda, cuda:K, or auto (cuda when torch sees one)
    seed: int = 0
    use_cuda_graph: bool = True
    embodiment: EmbodimentConfig = field(default_factory=EmbodimentConfig)
    task: PostureTaskConfig = field(default_factory=PostureTaskConfig)

    @classmethod
    def from_options(cls, model: str, num_envs: int, device: str, **options) -> "MuscleEnvConfig":
        """Route flat keyword options to the env, the embodiment or the task config by name."""
        env_keys = {f.name for f in fields(cls)} - {"embodiment", "task", "model", "num_envs", "device"}
        emb_keys = {f.name for f in fields(EmbodimentConfig)} - {"name"}
        task_keys = {f.name for f in fields(PostureTaskConfig)}
        env_kw, emb_kw, task_kw = {}, {}, {}
        for key, value in options.items():
            if key in env_keys:
                env_kw[key] = value
            elif key in emb_keys:
                emb_kw[key] = value
            elif key in task_keys:
                task_kw[key] = value
            else:
                known = sorted(env_keys | emb_keys | task_keys)
                raise TypeError(f"MuscleEnv got an unknown option {key!r}; known options: {', '.join(known)}")
        return cls(
            model=model,
            num_envs=num_envs,
            device=device,
            embodiment=EmbodimentConfig(name=model, **emb_kw),
            task=PostureTaskConfig(**task_kw),
            **env_kw,
        )
