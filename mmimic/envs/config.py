"""Options of the muscle environments (omegaconf-friendly dataclasses): the env shell with the posture
task (``MuscleEnvConfig``) and with the imitation task (``MuscleImitationEnvConfig``). Each task's own
options live with its terms, in ``mmimic.envs.tasks``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from typing import Union

from omegaconf import DictConfig, OmegaConf

from mmimic.embodiments import EmbodimentConfig
from mmimic.envs.tasks.imitation import ImitationTaskConfig
from mmimic.envs.tasks.posture import PostureTaskConfig

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
class MuscleEnvConfig:
    """Everything ``MuscleEnv`` needs. ``model`` is the embodiment name (see ``mmimic.embodiments``)."""

    model: str = "arm26"  # embodiment name: arm26 | bimanual | myofullbody (see mmimic.embodiments)
    num_envs: Union[int, str] = 16  # or "auto": 4096 on CUDA, a CPU-sized count on the CPU (auto_num_envs)
    device: str = "cpu"  # cpu, cuda, cuda:K, or auto (cuda when torch sees one)
    backend: str = "auto"  # simulator: auto (warp on CUDA, mujoco on CPU) | warp (mujoco_warp) | mujoco (C engine)
    sim_threads: Union[int, None] = None  # mujoco backend: worker threads (None: the cores this process may use)
    seed: int = 0  # seeds the env's generator (resets, clip sampling) and, in training, torch
    use_cuda_graph: bool = True  # warp on CUDA: capture the physics substeps as a CUDA graph
    action_map: str = "linear"  # action -> excitation: linear ((clip(a, -1, 1) + 1) / 2) | sigmoid (sigmoid(4 a): no flat region)
    embodiment: EmbodimentConfig = field(default_factory=EmbodimentConfig)  # the model's build options
    task: PostureTaskConfig = field(default_factory=PostureTaskConfig)  # the posture task

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
class MuscleImitationEnvConfig(MuscleEnvConfig):
    """``MuscleEnvConfig`` plus the reference motions: ``motions`` is a directory of motion files (searched
    recursively), a list file (one path per line, relative to the list), or one ``.npz``."""

    motions: str = ""  # reference motions: a directory, a list file or one .npz (empty: the demo set)
    task: ImitationTaskConfig = field(default_factory=ImitationTaskConfig)  # the imitation task


# Task keys of the layout before reward terms became a table (``rewards``), per task: old key -> (term,
# parameter, factor). The posture task's effort weight was positive and subtracted; it is now signed.
_LEGACY_TASK_KEYS = {
    "imitation": {**{f"{t}_weight": (t, "weight", 1.0) for t in (
        "joint_pos", "joint_vel", "root_pos", "root_vel", "site_pos", "site_rot", "site_vel", "effort", "action_rate",
        "action_bound")},
        **{f"{t}_scale": (t, "scale", 1.0) for t in (
            "joint_pos", "joint_vel", "root_pos", "root_vel", "site_pos", "site_rot", "site_vel")},
        "root_ang_vel_factor": ("root_vel", "ang_vel_factor", 1.0)},
    "posture": {"posture_scale": ("posture", "scale", 1.0), "upright_weight": ("upright", "weight", 1.0),
                "upright_scale": ("upright", "scale", 1.0), "effort_weight": ("effort", "weight", -1.0)},
}


def upgrade_task_yaml(node: DictConfig, task: str, where: str, prefix: str) -> DictConfig:
    """Move the legacy reward keys of ``node`` (a task's YAML node, at ``prefix``) into ``rewards``, with a
    warning naming them (``task``: "imitation" or "posture")."""
    if not isinstance(node, DictConfig):
        return node
    table = _LEGACY_TASK_KEYS[task]
    old = [k for k in list(node.keys()) if k in table]
    if not old:
        return node
    for key in old:
        term, param, factor = table[key]
        value = node.pop(key)
        OmegaConf.update(node, f"rewards.{term}.{param}", value * factor if value is not None else value,
                         merge=True)
    warnings.warn(f"{where}: {', '.join(prefix + k for k in old)} are keys of an earlier layout; read as "
                  f"{prefix}rewards.<term>.<weight|scale|...>", stacklevel=3)
    return node


def upgrade_env_yaml(data: DictConfig, task: str, where: str, prefix: str = "env.") -> DictConfig:
    """``upgrade_task_yaml`` on ``data[env][task]`` (``prefix`` "env.") or ``data[task]`` (prefix "")."""
    env = data.get("env") if prefix else data
    if isinstance(env, DictConfig) and isinstance(env.get("task"), DictConfig):
        upgrade_task_yaml(env.task, task, where, prefix + "task.")
    return data
