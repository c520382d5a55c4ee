"""MuscleEnv: a batched TorchRL environment over a ``Simulator``, with a posture-holding task.

One ``EnvBase`` with ``batch_size=[num_envs]`` (not a ParallelEnv): every tensor is (N, ...) on
the env's device and the step never leaves it. The simulator backend (``backend``: auto | warp |
mujoco, see ``mmimic.sim``) is chosen at construction; nothing else here depends on it.

Action: (N, nu) in [-1, 1], one entry per muscle, mapped linearly to the muscle excitation
``u = (a + 1) / 2`` in [0, 1] (MuJoCo muscles clamp ctrl to [0, 1]; activation follows
``da/dt = (u - a) / tau`` with tau 10-15 ms up, 40-50 ms down). ``a = -1`` relaxes a muscle.

Observation (``Composite``), each part scaled to be O(1):
- ``root``: free-root models only: root height (m), gravity in the root frame (3), root linear
  (world frame) and angular (local frame) velocity (6, x0.1);
- ``joint_pos`` (rad), ``joint_vel`` (rad/s, x0.1) of the non-root joints;
- ``muscle_length`` (0..1 across the actuator length range), ``muscle_velocity`` (range / s, x0.1),
  ``muscle_force`` (force / F0, negative = pulling), ``muscle_activation`` (0..1);
- ``posture_error``: target minus current joint positions (the task goal);
- ``observation``: all of the above concatenated, the input a plain MLP policy wants.
"""

from __future__ import annotations

import mujoco
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from mmimic.embodiments import load_embodiment
from mmimic.envs.config import MuscleEnvConfig, auto_num_envs
from mmimic.math import projected_gravity
from mmimic.sim import available_threads, make_simulator, resolve_backend

VEL_SCALE = 0.1


def resolve_env_config(cfg: MuscleEnvConfig) -> MuscleEnvConfig:
    """Check the config and replace every ``auto`` (device, num_envs) by its value, in place.

    ``backend`` stays as given (``auto`` is resolved by the simulator factory, so that a saved config
    moves between machines); a backend that cannot run on the device fails here, with the fix.
    """
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    backend = resolve_backend(cfg.backend, cfg.device)
    if cfg.sim_threads is not None and int(cfg.sim_threads) < 1:
        raise ValueError(f"sim_threads must be >= 1 (or None: all cores), got {cfg.sim_threads!r}")
    if cfg.num_envs == "auto":
        cfg.num_envs = auto_num_envs(cfg.model, backend, cfg.sim_threads or available_threads())
    elif isinstance(cfg.num_envs, str) and not cfg.num_envs.isdigit():
        raise ValueError(f"num_envs must be a positive integer or 'auto', got {cfg.num_envs!r}")
    cfg.num_envs = int(cfg.num_envs)
    if cfg.num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {cfg.num_envs!r}")
    return cfg


class MuscleEnv(EnvBase):
    """N muscle-driven worlds holding a target posture. See the module docstring for the specs."""

    batch_locked = True
    config_class = MuscleEnvConfig

    def __init__(self, model: str | MuscleEnvConfig = "arm26", num_envs: int | str = 16, device: str = "cpu",
                 **options):
        cfg = model if isinstance(model, MuscleEnvConfig) else self.config_class.from_options(
            model, num_envs, device, **options)
        resolve_env_config(cfg)
        cfg.embodiment.name = cfg.model  # the env's model names the embodiment
        self.cfg = cfg
        self.embodiment = load_embodiment(cfg.embodiment)
        super().__init__(device=torch.device(cfg.device), batch_size=torch.Size([int(cfg.num_envs)]))
        self.sim = make_simulator(self.embodiment, cfg.num_envs, self.device, backend=cfg.backend,
                                  threads=cfg.sim_threads, use_cuda_graph=cfg.use_cuda_graph)
        self._init_model_tables()
        self._make_specs()
        self.rng = torch.Generator(device=self.device)
        self._set_seed(cfg.seed)
        self.episode_step = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self._init_task_state()

    # ---------------------------------------------------------------- model tables
    @property
    def num_envs(self) -> int:
        return int(self.batch_size[0])

    def _init_model_tables(self) -> None:
        m, dev = self.embodiment.model, self.device
        self.free_root = self.embodiment.free_root
        self.q0 = 7 if self.free_root else 0  # first non-root qpos
        self.v0 = 6 if self.free_root else 0
        # Posture joints: every hinge/slide joint (one qpos each) except the free root.
        hinge_slide = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
        joints = [j for j in range(m.njnt) if int(m.jnt_type[j]) in hinge_slide]
        if len(joints) != m.nq - self.q0:
            raise ValueError(f"{self.embodiment.name}: only hinge/slide joints besides a free root are supported")
        rng = torch.as_tensor(m.jnt_range[joints], dtype=torch.float32, device=dev)
        limited = torch.as_tensor(m.jnt_limited[joints], dtype=torch.bool, device=dev)
        big = torch.tensor([-torch.pi, torch.pi], device=dev)
        self.joint_range = torch.where(limited[:, None], rng, big)  # (nj, 2)
        self.default_joint_qpos = self.sim.default_qpos[self.q0:].clone()
        lr = torch.as_tensor(m.actuator_lengthrange, dtype=torch.float32, device=dev)  # (nu, 2)
        self.length_lo = lr[:, 0]
        self.length_span = (lr[:, 1] - lr[:, 0]).clamp_min(1e-6)
        self.muscle_f0 = torch.as_tensor(m.actuator_gainprm[:, 2], dtype=torch.float32, device=dev).abs().clamp_min(1e-6)
        self.root_body = int(m.jnt_bodyid[0]) if self.free_root else 0

    def _obs_sizes(self) -> dict[str, int]:
        """Sizes of the observation parts, in the order they are concatenated into ``observation``."""
        return {**self._proprio_sizes(), "posture_error": self.embodiment.model.nq - self.q0}

    def _proprio_sizes(self) -> dict[str, int]:
        m = self.embodiment.model
        nu = m.nu
        sizes = {"joint_pos": m.nq - self.q0, "joint_vel": m.nv - self.v0, "muscle_length": nu,
                 "muscle_velocity": nu, "muscle_force": nu, "muscle_activation": m.na}
        if self.free_root:
            sizes = {"root": 10, **sizes}
        return sizes

    def _make_specs(self) -> None:
        n, dev = self.batch_size, self.device
        sizes = self._obs_sizes()
        parts = {k: Unbounded(shape=n + (s,), device=dev) for k, s in sizes.items()}
        parts["observation"] = Unbounded(shape=n + (sum(sizes.values()),), device=dev)
        self.observation_spec = Composite(parts, shape=n, device=dev)
        self.action_spec = Bounded(low=-1.0, high=1.0, shape=n + (self.sim.nu,), device=dev)
        self.reward_spec = Unbounded(shape=n + (1,), device=dev)
        self.done_spec = Composite(
            done=Categorical(2, shape=n + (1,), dtype=torch.bool, device=dev),
            terminated=Categorical(2, shape=n + (1,), dtype=torch.bool, device=dev),
            truncated=Categorical(2, shape=n + (1,), dtype=torch.bool, device=dev),
            shape=n,
            device=dev,
        )

    # ---------------------------------------------------------------- TorchRL API
    def _set_seed(self, seed: int | None) -> None:
        self.rng.manual_seed(int(seed) if seed is not None else int(torch.empty((), dtype=torch.int64).random_()))

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        n = self.num_envs
        mask = None
        if tensordict is not None and "_reset" in tensordict.keys():
            mask = tensordict.get("_reset").reshape(n).to(self.device, torch.bool)
        if mask is None:
            mask = torch.ones(n, dtype=torch.bool, device=self.device)
        self._reset_worlds(mask)
        obs = self._observation()
        done = torch.zeros(n, 1, dtype=torch.bool, device=self.device)
        return TensorDict({**obs, **self._reset_extras(obs, mask), "done": done, "terminated": done.clone(),
                           "truncated": done.clone()}, batch_size=self.batch_size, device=self.device)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action")
        excitation = ((action.clamp(-1.0, 1.0) + 1.0) * 0.5)
        unstable = self.sim.step(excitation)
        self.episode_step += 1
        self._advance(action)
        obs = self._observation()
        reward, failed = self._reward_and_failure(obs)
        # A world that blew up ends its episode (no bootstrapping from a NaN state) and scores 0.
        terminated = failed | unstable
        reward = torch.where(unstable, torch.zeros_like(reward), reward)
        truncated = self._truncated(terminated)
        extras = self._step_extras(terminated, truncated, unstable)
        return TensorDict(
            {**obs, **extras, "reward": reward[:, None], "done": (terminated | truncated)[:, None],
             "terminated": terminated[:, None], "truncated": truncated[:, None]},
            batch_size=self.batch_size, device=self.device)

    # ---------------------------------------------------------------- task hooks
    # A task subclass overrides these; the posture task below is the default. All run on the device
    # with static shapes (no host sync): the step is the hot loop.
    def _init_task_state(self) -> None:
        """Per-world task buffers, allocated once (after the specs and the generator exist)."""
        n = self.num_envs
        self.target_qpos = self.default_joint_qpos.expand(n, -1).clone()
        self.start_root_height = torch.ones(n, device=self.device)

    def _advance(self, action: torch.Tensor) -> None:
        """After the physics step, before the observation: task time and bookkeeping (posture: none)."""

    def _truncated(self, terminated: torch.Tensor) -> torch.Tensor:
        """(N,) bool: episodes cut short without failing (bootstrapped by the learner)."""
        if self.cfg.task.max_episode_steps > 0:
            return (self.episode_step >= self.cfg.task.max_episode_steps) & ~terminated
        return torch.zeros_like(terminated)

    def _step_extras(self, terminated: torch.Tensor, truncated: torch.Tensor, unstable: torch.Tensor) -> dict:
        """Extra entries of the step output (declared in the observation spec). Posture: none."""
        return {}

    def _reset_extras(self, obs: dict[str, torch.Tensor], mask: torch.Tensor) -> dict:
        """Extra entries of the reset output (the same keys as ``_step_extras``). Posture: none."""
        return {}

    # ---------------------------------------------------------------- task
    def _uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.rand(shape, generator=self.rng, device=self.device) * 2.0 - 1.0

    def _reset_worlds(self, mask: torch.Tensor) -> None:
        """Draw a start pose (default + noise) and a target posture for the masked worlds."""
        n, task = self.num_envs, self.cfg.task
        lo, hi = self.joint_range[:, 0], self.joint_range[:, 1]
        half = 0.5 * (hi - lo).clamp_max(2 * torch.pi)
        nj = self.default_joint_qpos.numel()
        target = torch.minimum(torch.maximum(self.default_joint_qpos + task.target_range * half * self._uniform((n, nj)), lo), hi)
        start = torch.minimum(torch.maximum(self.default_joint_qpos + task.reset_noise * self._uniform((n, nj)), lo), hi)
        qpos = self.sim.default_qpos.expand(n, -1).clone()
        qpos[:, self.q0:] = start
        self.sim.reset(mask, qpos=qpos)
        self.target_qpos = torch.where(mask[:, None], target, self.target_qpos)
        self.episode_step = torch.where(mask, torch.zeros_like(self.episode_step), self.episode_step)
        if self.free_root:
            self.start_root_height = torch.where(mask, self.sim.qpos[:, 2], self.start_root_height)

    def _observation(self) -> dict[str, torch.Tensor]:
        """Proprioception plus the posture goal, flattened (see ``_flatten``)."""
        obs = self._proprioception()
        obs["posture_error"] = self.target_qpos - self.sim.qpos[:, self.q0:]
        return self._flatten(obs)

    def _proprioception(self) -> dict[str, torch.Tensor]:
        """What the body senses of itself: the parts of ``_proprio_sizes``, each (N, size), not sanitized."""
        sim = self.sim
        obs = {
            "joint_pos": sim.qpos[:, self.q0:],
            "joint_vel": sim.qvel[:, self.v0:] * VEL_SCALE,
            "muscle_length": (sim.actuator_length - self.length_lo) / self.length_span,
            "muscle_velocity": sim.actuator_velocity / self.length_span * VEL_SCALE,
            "muscle_force": sim.actuator_force / self.muscle_f0,
            "muscle_activation": sim.act,
        }
        if self.free_root:
            quat = sim.qpos[:, 3:7]
            obs = {"root": torch.cat([sim.qpos[:, 2:3], projected_gravity(quat), sim.qvel[:, :6] * VEL_SCALE], -1),
                   **obs}
        return obs

    @staticmethod
    def _flatten(obs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The parts plus ``observation``, their concatenation.

        One flat tensor, sanitized once (unstable worlds may hold NaN until reset: never hand NaN to a
        policy); the named parts are views into it.
        """
        flat = torch.nan_to_num(torch.cat(list(obs.values()), dim=-1), nan=0.0, posinf=0.0, neginf=0.0)
        parts = dict(zip(obs, flat.split([v.shape[-1] for v in obs.values()], dim=-1)))
        return {**parts, "observation": flat}

    def _reward_and_failure(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) reward and (N,) bool failure (posture lost or fallen). See PostureTaskConfig."""
        task = self.cfg.task
        sq_err = obs["posture_error"].square().mean(-1)
        reward = torch.exp(-task.posture_scale * sq_err) - task.effort_weight * self.sim.act.square().mean(-1)
        failed = sq_err.sqrt() > task.max_posture_error
        if self.free_root:
            up_z = -obs["root"][:, 3]  # cos(tilt)
            tilt = torch.arccos(up_z.clamp(-1.0, 1.0))
            reward = reward + task.upright_weight * torch.exp(-task.upright_scale * tilt.square())
            failed = failed | (self.sim.qpos[:, 2] < task.fall_height_fraction * self.start_root_height)
        return reward, failed

    # ---------------------------------------------------------------- bookkeeping
    @property
    def unstable_count(self) -> int:
        """How many world-steps went unstable (NaN or runaway speed) and were reset. Host sync."""
        return int(self.sim.unstable_count)
