"""Data-parallel training with torch.distributed on the CPU (gloo, 2 processes, the small arm): both ranks end
with identical learners; rank 0 alone writes; a distributed run resumes exactly; one failing rank ends the
others; ``mmimic train --nproc 2`` through torchrun."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch

from mmimic.config import load_config
from mmimic.motion.demo import ensure_demo_library
from mmimic.rl.checkpoint import list_checkpoints, read_checkpoint


@pytest.fixture(scope="module")
def arm_motions(tmp_path_factory):
    return ensure_demo_library("arm26", tmp_path_factory.mktemp("data"), jobs=1, log=lambda *_: None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


OVERRIDES = ["env.device=cpu", "env.num_envs=8", "ppo.rollout_steps=8", "ppo.minibatches=2", "ppo.epochs=2",
             "checkpoint_every=2", "log_every=1", "env.task.max_episode_steps=10", "ppo.network.actor_hidden=[32,32]",
             "ppo.network.critic_hidden=[32,32]"]


def _rank(rank: int, world: int, port: int, out: str, motions: str, iterations: int, fail_rank: int,
          overrides: tuple = (), history: bool = False) -> None:
    """One rank, as torchrun would start it (its environment variables), writing its learner to out/rank<r>.pt
    (``history``: the per-iteration statistics too, from ``train_iteration`` instead of ``train``)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from mmimic.rl.distributed import Dist
    from mmimic.rl.trainer import Trainer, TrainConfig

    try:
        cfg = load_config(TrainConfig, "experiments/smoke.yaml", [
            f"env.motions={motions}", f"out_dir={out}/runs", f"iterations={iterations}",
            *(overrides or OVERRIDES)])
        trainer = Trainer(cfg, log=lambda *_: None, dist=Dist.from_environment("cpu"))
        if rank == fail_rank:
            real = trainer.train_iteration

            def fail_second():
                if trainer.iteration == 1:
                    raise RuntimeError(f"rank {rank} breaks down")
                return real()

            trainer.train_iteration = fail_second
        stats = [trainer.train_iteration() for _ in range(iterations)] if history else trainer.train()
        torch.save({"learner": trainer.learner.state_dict(), "obs": trainer.td["observation"].clone(),
                    "run_dir": str(trainer.run_dir), "env_steps": trainer.env_steps,
                    "history": stats if history else None}, f"{out}/rank{rank}.pt")
        trainer.dist.close()
    except BaseException:
        Path(f"{out}/rank{rank}.err").write_text(traceback.format_exc())
        raise


def _start(tmp_path, motions, iterations: int, fail_rank: int = -1, overrides: tuple = (),
           history: bool = False) -> list:
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, str(tmp_path), str(motions), iterations, fail_rank,
                                             tuple(overrides), history)) for r in range(2)]
    for p in procs:
        p.start()
    return procs


def _join(procs, timeout: float) -> list[int | None]:
    end = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, end - time.monotonic()))
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    return codes


def _equal_states(a, b, where="") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _equal_states(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _equal_states(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs between the ranks"
    else:
        assert a == b, where


def test_two_ranks_end_with_identical_learners_and_rank_0_alone_writes(arm_motions, tmp_path):
    procs = _start(tmp_path, arm_motions, iterations=3)
    codes = _join(procs, timeout=300)
    errors = [p.read_text() for p in tmp_path.glob("rank*.err")]
    assert codes == [0, 0], errors
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2))
    # weights, normalizer statistics, Adam moments, learning rate, update count: the same on both ranks
    _equal_states(r0["learner"], r1["learner"])
    assert r0["learner"]["model"]["actor_normalizer.count"] == 3 * 8 * 8  # all ranks' samples, 3 updates
    assert not torch.equal(r0["obs"], r1["obs"])  # their own envs (seeds)
    assert r0["run_dir"] == r1["run_dir"] and r0["env_steps"] == r1["env_steps"] == 3 * 8 * 8
    (run,) = (tmp_path / "runs").iterdir()
    assert str(run) == r0["run_dir"] and len(list(run.glob("events.*"))) == 1
    state, _ = read_checkpoint(run)
    assert state["iteration"] == 3 and state["world_size"] == 2 and len(state["ranks"]) == 1
    assert state["ranks"][0]["env"]["episode_step"].shape == (4,)  # rank 1's 4 envs in flight


def test_a_failing_rank_ends_the_other(arm_motions, tmp_path):
    """Rank 1 raises in its second iteration; rank 0, waiting in an all-reduce, fails too instead of hanging."""
    procs = _start(tmp_path, arm_motions, iterations=4, fail_rank=1)
    codes = _join(procs, timeout=240)
    assert codes[1] not in (0, None) and codes[0] not in (0, None), codes  # None: still running (hung)
    assert "rank 1 breaks down" in (tmp_path / "rank1.err").read_text()
    assert (tmp_path / "rank0.err").is_file()  # rank 0 stopped with an error of its own (the lost peer)
    assert not (tmp_path / "rank0.pt").exists()


def _cli(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "mmimic.cli", "train", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_nproc_2_through_torchrun_resumes_exactly(arm_motions, tmp_path):
    """``mmimic train --nproc 2``: 2 iterations, resume, 2 more end bit for bit where 4 in one go end (both
    ranks' episodes in flight come back from the checkpoint)."""
    repo = Path(__file__).parent.parent
    common = ["--config", str(repo / "experiments/smoke.yaml"), "--nproc", "2", f"env.motions={arm_motions}",
              *OVERRIDES, "checkpoint_every=1"]
    whole = _cli(*common, f"out_dir={tmp_path / 'a'}", "iterations=4", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert "2 processes (gloo, CPU)" in whole.stdout and "done: 4 iterations, 256 env steps" in whole.stdout
    first = _cli(*common, f"out_dir={tmp_path / 'b'}", "iterations=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    (run_b,) = (tmp_path / "b").iterdir()
    resumed = _cli("--nproc", "2", "--resume", str(run_b), "iterations=4", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (run_a,) = (tmp_path / "a").iterdir()
    a, b = read_checkpoint(run_a)[0], read_checkpoint(run_b)[0]
    assert a["iteration"] == b["iteration"] == 4 and [p.name for p in list_checkpoints(run_b)][-1] == "ckpt_00000004.pt"
    _equal_states(a["learner"], b["learner"], "learner")
    for key in ("env", "td"):
        _equal_states(a[key], b[key], f"rank 0 {key}")
        _equal_states(a["ranks"][0][key], b["ranks"][0][key], f"rank 1 {key}")


def test_nproc_that_does_not_split_the_envs_is_a_one_line_error(arm_motions, tmp_path):
    out = _cli("--config", "experiments/smoke.yaml", "--nproc", "3", f"env.motions={arm_motions}", "env.num_envs=8",
               "env.device=cpu", f"out_dir={tmp_path}", cwd=Path(__file__).parent.parent)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == ("mmimic train: env.num_envs=8 does not split over --nproc 3; "
                                                   "give a multiple of 3")


@pytest.mark.slow
def test_two_processes_with_half_the_envs_each_learn_like_one(arm_motions, tmp_path):
    """train-smoke (arm26 reaches, 64 envs, 150 iterations) in 2 processes of 32 envs each (gradients and
    normalizers averaged) clears the bar the 1-process run clears in tests/test_learning.py (site and joint
    errors halved, longer episodes, fewer early terminations). Measured here, 2 cores: 1 process (README)
    site error 0.054 -> 0.0055 m, joint error 0.22 -> 0.02 rad, episode length 72 -> 197; 2 processes
    0.055 -> 0.0040 m, 0.21 -> 0.017 rad, 78 -> 174 (2 min 10 s)."""
    from test_learning import _assert_learned, _mean

    iterations = 150
    procs = _start(tmp_path, arm_motions, iterations, overrides=("env.device=cpu",), history=True)
    assert _join(procs, timeout=1200) == [0, 0], [p.read_text() for p in tmp_path.glob("rank*.err")]
    history = torch.load(tmp_path / "rank0.pt", weights_only=False)["history"]
    assert len(history) == iterations
    for key in ("tracking_errors/site_rel", "tracking_errors/joint_pos", "episode/episode_length"):
        start, end = _mean(history, key, slice(0, 10)), _mean(history, key, slice(-10, None))
        print(f"2 processes: {key} {start:.4f} -> {end:.4f}")
    _assert_learned(history)


@pytest.mark.slow
def test_bench_train_nproc_2_records_the_scaling(arm_motions, tmp_path):
    out = tmp_path / "scaling.json"
    run = subprocess.run(
        [sys.executable, "-m", "mmimic.cli", "bench", "--train", "--nproc", "2", "--model", "arm26", "--device", "cpu",
         "--num-envs", "16", "--steps", "2", "--warmup", "1", "--out", str(out), f"env.motions={arm_motions}",
         "ppo.rollout_steps=8", "ppo.minibatches=2", "ppo.epochs=1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert result["kind"] == "train-scaling" and result["nproc"] == 2 and row["num_envs"] == 16
    assert row["train_steps_per_s_1"] > 0 and row["train_steps_per_s_n"] > 0
    assert row["scaling"] == pytest.approx(row["train_steps_per_s_n"] / row["train_steps_per_s_1"])
    assert result["ranked"]["rows"][0]["num_envs"] == 16 and "scaling" in run.stdout


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (nccl, one process per GPU)")
def test_nproc_2_on_two_gpus(arm_motions, tmp_path):
    """The CUDA path (nccl, cuda:LOCAL_RANK, warp): unmeasured here (no GPU); run where 2 GPUs are."""
    repo = Path(__file__).parent.parent
    run = _cli("--config", str(repo / "experiments/smoke.yaml"), "--nproc", "2", "--device", "cuda",
               f"env.motions={arm_motions}", f"out_dir={tmp_path}", "env.num_envs=64", "iterations=3",
               "checkpoint_every=1", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "2 processes (nccl, one GPU each)" in run.stdout
    (run_dir,) = tmp_path.iterdir()
    state, _ = read_checkpoint(run_dir)
    assert state["iteration"] == 3 and state["world_size"] == 2


@pytest.mark.slow
def test_sigterm_to_nproc_2_reaches_the_ranks_which_checkpoint(arm_motions, tmp_path):
    """A cluster's pre-emption signals the launcher: torchrun passes it on, both ranks finish the iteration,
    rank 0 writes the checkpoint and says how to resume; exit status 143."""
    import signal

    repo = Path(__file__).parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmimic.cli", "train", "--config", str(repo / "experiments/smoke.yaml"), "--nproc", "2",
         f"env.motions={arm_motions}", f"out_dir={tmp_path}", *OVERRIDES, "iterations=100000",
         "checkpoint_every=100000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    lines = []
    for line in proc.stdout:  # wait for training to run
        lines.append(line)
        if line.startswith("it 2/"):
            break
    proc.send_signal(signal.SIGTERM)
    out = "".join(lines) + proc.communicate(timeout=300)[0]
    assert proc.returncode == 128 + signal.SIGTERM, out[-3000:]
    (run,) = tmp_path.glob("smoke-*")
    assert list_checkpoints(run), out[-3000:]
    assert "stopped by SIGTERM" in out and f"continue with: mmimic train --nproc 2 --resume {run}" in out
