"""Options of the muscle environments and their tasks (omegaconf-friendly dataclasses): posture holding
(``MuscleEnvConfig``) and motion imitation (``MuscleImitationEnvConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Union

from mmimic.embodiments import EmbodimentConfig

# num_envs "auto": on CUDA (mujoco_warp), enough worlds to fill a GPU; on the CPU (MuJoCo's C
# engine), the count that gave the most training steps/s on 2 cores with `mmimic bench --train`
# (see README), per 2 simulator threads.
AUTO_NUM_ENVS_CUDA = 4096
AUTO_NUM_ENVS_CPU_PER_2_THREADS = {"arm26": 64, "bimanual": 64, "myofullbody": 32}


def auto_num_envs(model: str, backend: str, threads: int) -> int:
    """The ``num_envs: auto`` count for ``model`` on ``backend`` ("warp" on CUDA, "mujoco" on CPU)."""
    if backend == "warp":
        return AUTO_NUM_ENVS_CUDA
    per_two = AUTO_NUM_ENVS_CPU_PER_2_THREADS.get(model, 64)
    return max(per_two, per_two * threads // 2)


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
    num_envs: Union[int, str] = 16  # or "auto": 4096 on CUDA, a CPU-sized count on the CPU (auto_num_envs)
    device: str = "cpu"  # cpu, cuda, cuda:K, or auto (cuda when torch sees one)
    backend: str = "auto"  # simulator: auto (warp on CUDA, mujoco on CPU) | warp (mujoco_warp) | mujoco (C engine)
    sim_threads: Union[int, None] = None  # mujoco backend: worker threads (None: the cores this process may use)
    seed: int = 0
    use_cuda_graph: bool = True
    embodiment: EmbodimentConfig = field(default_factory=EmbodimentConfig)
    task: PostureTaskConfig = field(default_factory=PostureTaskConfig)

    @classmethod
    def from_options(cls, model: str, num_envs: int | str, device: str, **options) -> "MuscleEnvConfig":
        """Route flat keyword options to the env, the embodiment or the task config by name.

        Works for subclasses too: the task config class is the ``task`` field's type.
        """
        task_cls = {f.name: f for f in fields(cls)}["task"].default_factory
        env_keys = {f.name for f in fields(cls)} - {"embodiment", "task", "model", "num_envs", "device"}
        emb_keys = {f.name for f in fields(EmbodimentConfig)} - {"name"}
        task_keys = {f.name for f in fields(task_cls)}
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
                owner = cls.__name__.removesuffix("Config")
                raise TypeError(f"{owner} got an unknown option {key!r}; known options: {', '.join(known)}")
        return cls(
            model=model,
            num_envs=num_envs,
            device=device,
            embodiment=EmbodimentConfig(name=model, **emb_kw),
            task=task_cls(**task_kw),
            **env_kw,
        )


@dataclass
class ImitationTaskConfig:
    """Track reference motions from a MotionLibrary (DeepMimic-style rewards, RSI, early termination).

    Reward: ``total = sum_name weight_name * term_name`` over ``reward_terms``. Tracking terms are
    ``exp(-scale * error)`` in (0, 1]; penalty terms are >= 0 and their weights <= 0. Errors (SI units):
    joint_pos   mean over hinge/slide joints of dq^2 (rad^2); a free root adds its orientation angle^2
                as one more joint
    joint_vel   mean over non-root dofs of dqdot^2 ((rad/s)^2)
    root_pos    |p - p_ref|^2 of the root (m^2)                      (free root only)
    root_vel    |v - v_ref|^2 + root_ang_vel_factor |w - w_ref|^2    (free root only)
    site_pos    mean over mimic sites of |(x - x_anchor) - (x_ref - x_ref_anchor)|^2 (m^2)
    site_rot    mean over mimic sites of the orientation angle^2 (rad^2)
    site_vel    mean over mimic sites of |v - v_ref|^2, velocities by finite differences over a control
                step ((m/s)^2; taken as 0 on a freshly reset state)
    effort      mean muscle activation^2; action_rate mean (a_t - a_{t-1})^2 of the clipped actions;
    action_bound  mean max(|a| - 1, 0)^2 of the raw actions (what clipping hid from the physics).
    """

    # reference-state initialisation and clip sampling
    random_start: bool = True  # start at a uniform time in the clip (RSI); False: at time 0
    start_end_margin_s: float = 0.1  # RSI leaves this much of each clip's end out
    reset_activation: float = 0.05  # muscle activation set on reset (MuJoCo act, 0..1)
    sampling: str = "uniform"  # uniform | failure (weights ~ (early-termination rate + eps) ^ power)
    failure_eps: float = 0.05
    failure_power: float = 1.0
    weight_update_interval: int = 200  # control steps between sampling-weight updates (one host sync)
    stats_decay: float = 1.0  # per-clip counts are multiplied by this at each weight update (1: no decay)
    # observation
    lookahead_frames: int = 3  # K reference frames, at t + control_dt + stride * (0..K-1)
    lookahead_stride_s: float = 0.05
    goal_joint_pos: bool = True  # add the K reference joint positions (minus current) to the goal
    history_steps: int = 0  # past proprioception vectors appended to the observation
    critic_obs: bool = False  # add "critic_observation": observation + privileged tracking state
    refresh_kinematics: bool = False  # recompute site positions after each step (else 1 physics step old)
    # reward weights (signed) and scales
    joint_pos_weight: float = 0.3
    joint_pos_scale: float = 5.0
    joint_vel_weight: float = 0.1
    joint_vel_scale: float = 0.1
    root_pos_weight: float = 0.1
    root_pos_scale: float = 20.0
    root_vel_weight: float = 0.1
    root_vel_scale: float = 1.0
    root_ang_vel_factor: float = 0.1
    site_pos_weight: float = 0.3
    site_pos_scale: float = 40.0
    site_rot_weight: float = 0.1
    site_rot_scale: float = 2.0
    site_vel_weight: float = 0.1
    site_vel_scale: float = 0.5
    effort_weight: float = -0.05
    action_rate_weight: float = -0.02
    action_bound_weight: float = -0.1
    # episode end (a threshold <= 0 disables that check)
    max_site_error: float = 0.3  # m, mean root-relative site deviation -> terminated
    max_root_pos_error: float = 0.5  # m, free root -> terminated
    max_root_rot_error: float = 1.0  # rad, free root -> terminated
    max_episode_steps: int = 1000  # -> truncated (as is reaching the clip's end)


@dataclass
class MuscleImitationEnvConfig(MuscleEnvConfig):
    """``MuscleEnvConfig`` plus the reference motions: ``motions`` is a directory of motion files (searched
    recursively), a list file (one path per line, relative to the list), or one ``.npz``."""

    motions: str = ""
    task: ImitationTaskConfig = field(default_factory=ImitationTaskConfig)
