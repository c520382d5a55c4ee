"""``mmimic doctor`` on the CPU (what CI runs): the checks, the JSON, the exit status, and that it fails when
a check does (a run that raises, a simulator that drifts from C MuJoCo)."""

from __future__ import annotations

import json

import pytest
import torch

from mmimic.cli import main


def _doctor(tmp_path, *args) -> tuple[int, dict]:
    out = tmp_path / "doctor.json"
    rc = main(["doctor", "--device", "cpu", "--models", "arm26", "--out", str(out), *args])
    return rc, json.loads(out.read_text())


def test_doctor_on_cpu_passes_and_writes_the_json(tmp_path, capsys):
    rc, result = _doctor(tmp_path)
    printed = capsys.readouterr().out
    assert rc == 0 and result["ok"] and result["failed"] == 0
    assert "all checks passed" in printed and "parity" in printed and "checkpoint" in printed
    for key in ("torch", "warp-lang", "mujoco", "mujoco-warp", "torch_cuda", "cuda_driver_api", "nvidia_driver"):
        assert key in result["versions"], key
    assert result["device"] == "cpu" and result["warp_devices"] == ["cpu"]
    status = {(c["name"], c["model"]): c["status"] for c in result["checks"]}
    assert status == {("stack", "-"): "info", ("build", "arm26"): "pass", ("cuda_graph", "arm26"): "skip",
                      ("parity", "arm26"): "pass", ("nan", "arm26"): "pass", ("speed", "arm26"): "info",
                      ("sync", "arm26"): "skip", ("checkpoint", "arm26"): "pass"}
    (run,) = result["runs"]
    assert run["model"] == "arm26" and run["num_envs"] == 16 and run["backend"] == "mujoco"
    assert run["parity"]["steps"] == 20 and run["parity"]["worlds"] == 4
    assert run["parity"]["max_abs_qpos"] <= run["parity"]["tol"]
    assert run["env_steps_per_s"] > 0 and run["unstable_world_steps"] == 0 and run["memory_mb"] is not None


def test_a_run_that_raises_fails_the_doctor_with_the_rerun_command(tmp_path, monkeypatch, capsys):
    from mmimic.envs import MuscleEnv

    def crash(self, td, sync_free=None):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(MuscleEnv, "step_and_reset", crash)
    rc, result = _doctor(tmp_path, "--no-checkpoint")
    printed = capsys.readouterr().out
    assert rc == 1 and not result["ok"]
    (failed,) = [c for c in result["checks"] if c["status"] == "fail"]
    assert failed["name"] == "run" and failed["model"] == "arm26" and failed["num_envs"] == 16
    assert "illegal memory access" in failed["detail"]
    rerun = "CUDA_LAUNCH_BLOCKING=1 mmimic doctor --device cpu --models arm26 --num-envs 16 --backend auto"
    assert failed["rerun"] == rerun and rerun in printed and "1 check(s) FAILED" in printed
    assert result["runs"][0]["error"].startswith("RuntimeError: CUDA error")


def test_a_simulator_that_drifts_from_c_mujoco_fails_parity(tmp_path, monkeypatch):
    from mmimic.sim import MujocoSim

    real_step = MujocoSim.step

    def weak_muscles(self, ctrl=None):  # the simulator sees half the excitation it was given
        return real_step(self, None if ctrl is None else ctrl * 0.5)

    monkeypatch.setattr(MujocoSim, "step", weak_muscles)
    rc, result = _doctor(tmp_path, "--no-checkpoint")
    (parity,) = [c for c in result["checks"] if c["name"] == "parity"]
    assert rc == 1 and parity["status"] == "fail" and parity["values"]["max_abs_act"] > 1e-3


def test_bad_doctor_options_are_one_line_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["doctor", "--models", "arm26,nosuch"])
    assert exc.value.code == 2 and "unknown model(s) nosuch; known: arm26" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            main(["doctor", "--device", "cuda"])
        assert "torch sees no CUDA device" in capsys.readouterr().err


def test_where_torch_sees_a_gpu_and_warp_does_not_the_doctor_says_why_once(monkeypatch):
    """A driver too old for warp 1.19 (torch still sees the GPU): one failed check with the fix, no model runs."""
    from types import SimpleNamespace

    from mmimic.bench.doctor import format_table, run_doctor

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i=0: SimpleNamespace(total_memory=80 * 2**30))
    result = run_doctor("cuda:0", ["arm26"], [64])
    status = {c["name"]: c["status"] for c in result["checks"]}
    assert status == {"stack": "info", "warp_cuda": "fail", "runs": "skip"} and not result["ok"]
    (warp_cuda,) = [c for c in result["checks"] if c["name"] == "warp_cuda"]
    assert "R580 or newer" in warp_cuda["detail"] and result["runs"] == []
    assert result["torch_cuda_devices"] == [{"index": 0, "name": "Fake GPU", "memory_gib": 80.0}]
    assert "1 check(s) FAILED" in format_table(result)
