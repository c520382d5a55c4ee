"""MuscleEnv: the TorchRL shell over a ``Simulator``, with a task plugged in (posture holding by default).

One ``EnvBase`` with ``batch_size=[num_envs]`` (not a ParallelEnv): every tensor is (N, ...) on
the env's device and the step never leaves it. The shell owns the simulator, the specs, partial
resets and NaN handling; the task (``mmimic.envs.tasks``) owns what is observed, rewarded and ended,
as tables of term functions over one per-step state (``mmimic.envs.terms``). The simulator backend
(``backend``: auto | warp | mujoco, see ``mmimic.sim``) is chosen at construction; nothing else
here depends on it.

Action: (N, nu) in [-1, 1], one entry per muscle, mapped linearly to the muscle excitation
``u = (a + 1) / 2`` in [0, 1] (NaN counts as 0, anything else outside [-1, 1] is clipped; see
``sanitize_action``) (MuJoCo muscles clamp ctrl to [0, 1]; activation follows
``da/dt = (u - a) / tau`` with tau 10-15 ms up, 40-50 ms down). ``a = -1`` relaxes a muscle.
``action_map: sigmoid`` maps ``u = sigmoid(4 a)`` instead (0.018 at -1, 0.98 at 1): no flat region
beyond the bounds, where a Gaussian policy's mean can drift while its noise still excites the muscle.

Output (``Composite``): one entry per observation term (the posture task: ``root`` for free roots,
``joint_pos`` (rad), ``joint_vel`` (rad/s x0.1), ``muscle_length`` (0..1 across the length range),
``muscle_velocity``, ``muscle_force`` (/ F0), ``muscle_activation``, ``posture_error``);
``observation``: their concatenation, the input a plain MLP policy wants; ``critic_observation`` when
the task has privileged terms; ``reward_terms`` and ``tracking_errors`` (sub-TensorDicts of (N,)
tensors, one per term); ``unstable`` (the world blew up this step); reward and done flags.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from mmimic import keys
from mmimic.embodiments import load_embodiment
from mmimic.envs.body import BodyTables
from mmimic.envs.config import MuscleEnvConfig, auto_num_envs
from mmimic.envs.tasks.base import Task
from mmimic.envs.tasks.posture import PostureTask
from mmimic.envs.terms import any_terminated, total_reward
from mmimic.sim import available_threads, make_simulator, resolve_backend, resolve_device

__all__ = ["MuscleEnv", "resolve_env_config"]


ACTION_MAPS = ("linear", "sigmoid")
SIGMOID_GAIN = 4.0  # action_map sigmoid: u = sigmoid(4 a)


def excitation(action: torch.Tensor, action_map: str = "linear") -> torch.Tensor:
    """The muscle excitation in [0, 1] of a (sanitized) action (see the module docstring)."""
    if action_map == "sigmoid":
        return torch.sigmoid(SIGMOID_GAIN * action)
    return (action.clamp(-1.0, 1.0) + 1.0) * 0.5


def resolve_env_config(cfg: MuscleEnvConfig) -> MuscleEnvConfig:
    """Check the config and replace every ``auto`` (device, num_envs) by its value, in place.

    ``backend`` stays as given (``auto`` is resolved by the simulator factory, so that a saved config
    moves between machines); a backend that cannot run on the device fails here, with the fix.
    """
    cfg.device = resolve_device(cfg.device)
    backend = resolve_backend(cfg.backend, cfg.device)
    if cfg.action_map not in ACTION_MAPS:
        raise ValueError(f"action_map must be one of {', '.join(ACTION_MAPS)}, got {cfg.action_map!r}")
    if cfg.sim_threads is not None and int(cfg.sim_threads) < 1:
        raise ValueError(f"sim_threads must be >= 1 (or None: all cores), got {cfg.sim_threads!r}")
    if cfg.num_envs == "auto":
        cfg.num_envs = auto_num_envs(cfg.model, backend, cfg.sim_threads or available_threads())
    elif isinstance(cfg.num_envs, str) and not cfg.num_envs.isdigit():
        raise ValueError(f"num_envs must be a positive integer or 'auto', got {cfg.num_envs!r}")
    cfg.num_envs = int(cfg.num_envs)
    if cfg.num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {cfg.num_envs!r}")
    cfg.task.validate()
    return cfg


ACTION_LIMIT = 10.0  # raw actions are clamped to [-10, 10]: bounds the out-of-range penalty


def sanitize_action(action: torch.Tensor) -> torch.Tensor:
    """The action as the env uses it: float32, NaN -> 0, +-inf and huge values clamped to +-ACTION_LIMIT
    (the physics sees [-1, 1] anyway). A non-finite or huge action from a diverging policy then costs
    a bounded penalty instead of a NaN / -inf reward that would poison the whole PPO batch; bool or
    integer actions are cast instead of crashing."""
    action = action.to(torch.float32)
    return torch.nan_to_num(action, nan=0.0).clamp(-ACTION_LIMIT, ACTION_LIMIT)


def _sanitized(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate and replace NaN/inf by 0: unstable worlds may hold NaN until reset, and a policy
    must never see one."""
    return torch.nan_to_num(torch.cat(parts, dim=-1), nan=0.0, posinf=0.0, neginf=0.0)


class MuscleEnv(EnvBase):
    """N muscle-driven worlds running a task (posture holding here). See the module docstring for the specs.

    Options are the fields of ``MuscleEnvConfig``, ``EmbodimentConfig`` and the task config, by name.

    Examples:
        >>> from mmimic.envs import MuscleEnv
        >>> env = MuscleEnv("arm26", num_envs=4, backend="mujoco", seed=0)
        >>> td = env.reset()
        >>> td["observation"].shape  # 2 joints (pos, vel), 6 muscles x 4, 2 posture errors
        torch.Size([4, 30])
        >>> td = env.rand_step(td)
        >>> td["next", "reward"].shape, sorted(td["next", "reward_terms"].keys())
        (torch.Size([4, 1]), ['effort', 'posture'])
    """

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
        self.body = BodyTables.from_model(self.embodiment.model, self.embodiment.free_root, self.sim.default_qpos,
                                          self.device, self.embodiment.name)
        self.rng = torch.Generator(device=self.device)
        self._set_seed(cfg.seed)
        self.sync_free = self.device.type == "cuda"  # step_and_reset's default: no host reads (see there)
        self.episode_step = torch.zeros(self.num_envs, dtype=torch.int64, device=self.device)
        self.task = self._make_task()
        self._make_specs()

    def _make_task(self) -> Task:
        return PostureTask(self.cfg.task, self.sim, self.body, self.rng, self.num_envs, self.device)

    @property
    def num_envs(self) -> int:
        return int(self.batch_size[0])

    @property
    def reward_term_names(self) -> list[str]:
        return list(self.task.rewards)

    @property
    def tracking_error_names(self) -> list[str]:
        return list(self.task.errors)

    def reward_weights(self) -> dict[str, float]:
        """Weight of each reward term (``reward = sum weight * term``, see ``terms.total_reward``)."""
        return {k: r.weight for k, r in self.task.rewards.items()}

    # ---------------------------------------------------------------- specs (sizes from the terms)
    def _make_specs(self) -> None:
        n, dev = self.batch_size, self.device
        obs = self._observe(self.task.state(None))
        parts = {k: Unbounded(shape=n + (v.shape[-1],), device=dev) for k, v in obs.items()}
        for key, names in ((keys.REWARD_TERMS, self.reward_term_names),
                           (keys.TRACKING_ERRORS, self.tracking_error_names)):
            parts[key] = Composite({k: Unbounded(shape=n, device=dev) for k in names}, shape=n, device=dev)
        parts[keys.UNSTABLE] = Categorical(2, shape=n, dtype=torch.bool, device=dev)
        self.observation_spec = Composite(parts, shape=n, device=dev)
        self.action_spec = Bounded(low=-1.0, high=1.0, shape=n + (self.sim.nu,), device=dev)
        self.reward_spec = Unbounded(shape=n + (1,), device=dev)
        flag = Categorical(2, shape=n + (1,), dtype=torch.bool, device=dev)
        self.done_spec = Composite({keys.DONE: flag, keys.TERMINATED: flag.clone(), keys.TRUNCATED: flag.clone()},
                                   shape=n, device=dev)

    # ---------------------------------------------------------------- TorchRL API
    def _set_seed(self, seed: int | None) -> None:
        self.rng.manual_seed(int(seed) if seed is not None else int(torch.empty((), dtype=torch.int64).random_()))

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        n = self.num_envs
        mask = None
        if tensordict is not None and keys.RESET in tensordict.keys():
            mask = tensordict.get(keys.RESET).reshape(n).to(self.device, torch.bool)
        if mask is None:
            mask = torch.ones(n, dtype=torch.bool, device=self.device)
        self.task.reset(mask, **kwargs)  # kwargs: a task's own reset options (imitation: clip_id, time)
        self.episode_step = torch.where(mask, torch.zeros_like(self.episode_step), self.episode_step)
        s = self.task.state(None)
        obs = self._observe(s)
        terms = {k: r(s) for k, r in self.task.rewards.items()}
        errors = {k: f(s) for k, f in self.task.errors.items()}
        no = torch.zeros(n, dtype=torch.bool, device=self.device)
        return self._output(obs, terms, errors, no, None, no, no)

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        raw = tensordict.get(keys.ACTION)
        if tuple(raw.shape) != tuple(self.action_spec.shape):
            raise ValueError(f"{type(self).__name__}.step: action must be (num_envs, nu) = "
                             f"{tuple(self.action_spec.shape)}, got {tuple(raw.shape)}")
        action = sanitize_action(raw)
        # 1. physics: a world that blew up (NaN / runaway) is flagged and ends its episode
        unstable = self.sim.step(excitation(action, self.cfg.action_map))
        self.episode_step += 1
        # 2. the task's clock, then the one state every term reads
        self.task.advance()
        s = self.task.state(action)
        # 3. observation, reward terms and tracking errors, reward (0 where unstable)
        obs = self._observe(s)
        terms = {k: r(s) for k, r in self.task.rewards.items()}
        errors = {k: f(s) for k, f in self.task.errors.items()}
        reward = total_reward(terms, self.task.rewards, unstable)
        # 4. episode ends: failing (or blowing up) terminates; running out of time truncates
        terminated = any_terminated(self.task.terminations, s, unstable) | unstable
        truncated = self.task.truncated(s, self.episode_step) & ~terminated
        # 5. the task keeps what the next step needs (previous action, sites, clip statistics)
        self.task.end_step(s, obs, terminated, truncated)
        return self._output(obs, terms, errors, unstable, reward, terminated, truncated)

    def step_and_reset(self, tensordict: TensorDictBase, sync_free: bool | None = None
                       ) -> tuple[TensorDictBase, TensorDictBase]:
        """``step_and_maybe_reset`` (same inputs and outputs) without reading anything back to the host.

        torchrl's version asks the host whether any world is done (``done.any()``, and more checks in
        ``reset``) before it resets them: a host sync per step on a GPU. Here, with ``sync_free`` (the
        default on CUDA), the masked reset runs every step, for the worlds that are done (none, some or
        all: a mask in device memory), and its output is merged in with ``where``: the simulator's reset
        is a CUDA graph, the task's reset a fixed set of tensor ops, and nothing waits for the GPU. It costs
        one reset's work per step (RNG draws, the reference lookup, kinematics in every world). Without
        ``sync_free`` (the default on the CPU, where a read costs nothing) it resets only when a world is
        done, exactly as torchrl does: the same results and the same random draws. ``sync_free=None`` takes
        ``self.sync_free`` (True on CUDA; ``collect`` steps with this method).
        """
        if sync_free is None:
            sync_free = self.sync_free
        tensordict = self.step(tensordict)
        nxt = self._step_mdp(tensordict)
        done = nxt.get(keys.DONE).reshape(self.num_envs)
        if sync_free or bool(done.any()):
            fresh = self._reset(TensorDict({keys.RESET: done[:, None]}, batch_size=self.batch_size, device=self.device))
            # entries the reset does not make (the action) are zeroed in reset worlds, as torchrl does; given
            # here as zeros because TensorDict.where's pad would build a scalar tensor from the host (an H2D
            # copy that synchronizes) for each of them
            for key in nxt.keys(True, True):
                if key not in fresh.keys(True, True):
                    fresh.set(key, torch.zeros_like(nxt.get(key)))
            nxt.where(~done, other=fresh, out=nxt, pad=0, update_batch_size=True)
        return tensordict, nxt

    def _observe(self, s) -> dict[str, torch.Tensor]:
        """Every observation term, ``observation`` (their sanitized concatenation; the named parts are views
        into it) and, when the task has privileged terms, ``critic_observation``."""
        raw = {k: t.fn(s) for k, t in self.task.observations.items()}
        flat = _sanitized(list(raw.values()))
        out = dict(zip(raw, flat.split([v.shape[-1] for v in raw.values()], dim=-1)))
        out[keys.OBSERVATION] = flat
        if self.task.privileged:
            out[keys.CRITIC_OBSERVATION] = _sanitized([flat, *(t.fn(s) for t in self.task.privileged.values())])
        return out

    def _output(self, obs, terms, errors, unstable, reward, terminated, truncated) -> TensorDict:
        """The step (or reset) TensorDict; terms and errors of unstable worlds are 0 (never NaN)."""
        n = self.batch_size

        def zeroed(values: dict) -> TensorDict:
            return TensorDict({k: torch.where(unstable, torch.zeros_like(v), v) for k, v in values.items()},
                              batch_size=n, device=self.device)

        out = {**obs, keys.REWARD_TERMS: zeroed(terms), keys.TRACKING_ERRORS: zeroed(errors),
               keys.UNSTABLE: unstable, keys.DONE: (terminated | truncated)[:, None],
               keys.TERMINATED: terminated[:, None], keys.TRUNCATED: truncated[:, None]}
        if reward is not None:
            out[keys.REWARD] = reward[:, None]
        return TensorDict(out, batch_size=n, device=self.device)

    # ---------------------------------------------------------------- saving (exact resume)
    def state_dict(self) -> dict:
        """The in-flight episodes, bit for bit: the simulator's state, the task's buffers, episode steps
        and the env's generator. (The TensorDict the caller carries between steps is the caller's to save.)"""
        return {"sim": self.sim.state_dict(), "task": self.task.state_dict(),
                "episode_step": self.episode_step.clone(), "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["episode_step"].shape) != (self.num_envs,):
            raise ValueError(f"env state: {tuple(state['episode_step'].shape)[0]} envs in the saved state, "
                             f"{self.num_envs} here")
        self.sim.load_state_dict(state["sim"])
        self.task.load_state_dict(state["task"])
        self.episode_step = state["episode_step"].to(self.device).clone()
        self.rng.set_state(state["rng"].cpu())  # a CPU byte tensor, whatever map_location did

    # ---------------------------------------------------------------- bookkeeping
    @property
    def unstable_count(self) -> int:
        """How many world-steps went unstable (NaN or runaway speed) and were reset. Host sync."""
        return int(self.sim.unstable_count)
