"""Both simulator backends against plain C MuJoCo (``mujoco.mj_step``, float64) on the same controls,
against each other, and the C backend with 1 and with N threads.

One control step of a simulator is ``embodiment.substeps`` calls of ``mujoco.mj_step``; after it
``qpos/qvel/act`` are at the new time and ``actuator_force`` is that of the last substep's start,
exactly as ``MjData`` is after ``mj_step``. WarpSim computes in float32 (tolerances below); MujocoSim
runs C MuJoCo itself in float64 and only its float32 views round.
"""

import mujoco
import numpy as np
import pytest
import torch
from helpers import as_np, make_sim, mj_default_data, warmstart

from mmimic.sim import STATE_VIEWS, MujocoSim, Simulator, WarpSim

N_STEPS = 25

# (qpos atol, qvel atol, act atol, force tolerance relative to max |force|)
TOLERANCES = {
    ("warp", "arm26"): (1e-4, 1e-3, 1e-5, 1e-3),
    ("warp", "bimanual"): (1e-4, 2e-2, 1e-5, 1e-3),  # contacts and 76 dofs: qvel drifts more in float32
    # the C backend is C MuJoCo: only the float32 rounding of its views
    ("mujoco", "arm26"): (1e-6, 1e-5, 1e-6, 1e-6),
    ("mujoco", "bimanual"): (1e-6, 1e-4, 1e-6, 1e-6),
}


def _mj_control_step(emb, d: mujoco.MjData, ctrl: np.ndarray) -> None:
    d.ctrl[:] = ctrl
    for _ in range(emb.substeps):
        mujoco.mj_step(emb.model, d)


def _compare(sim: Simulator, world: int, d: mujoco.MjData, tol, where: str) -> None:
    q_atol, v_atol, a_atol, f_rtol = tol
    np.testing.assert_allclose(as_np(sim.qpos[world]), d.qpos, rtol=0, atol=q_atol, err_msg=f"qpos {where}")
    np.testing.assert_allclose(as_np(sim.qvel[world]), d.qvel, rtol=0, atol=v_atol, err_msg=f"qvel {where}")
    np.testing.assert_allclose(as_np(sim.act[world]), d.act, rtol=0, atol=a_atol, err_msg=f"act {where}")
    fmax = np.abs(d.actuator_force).max()
    assert fmax > 0, f"no muscle force in C MuJoCo {where}: the comparison would be empty"
    np.testing.assert_allclose(as_np(sim.actuator_force[world]), d.actuator_force, rtol=0, atol=f_rtol * fmax,
                               err_msg=f"actuator_force {where}")
    assert sim.time[world].item() == pytest.approx(d.time, abs=1e-6), where


def _run_parity(emb, backend: str, num_worlds: int = 2, n_steps: int = N_STEPS, seed: int = 0) -> None:
    m = emb.model
    tol = TOLERANCES[backend, emb.name]
    sim = make_sim(emb, num_worlds, backend)
    ds = [mj_default_data(m) for _ in range(num_worlds)]
    rng = np.random.default_rng(seed)
    for t in range(n_steps):
        ctrl = rng.uniform(0.0, 1.0, size=(num_worlds, m.nu))
        unstable = sim.step(torch.as_tensor(ctrl, dtype=torch.float32))
        assert not unstable.any()
        for w, d in enumerate(ds):
            _mj_control_step(emb, d, ctrl[w])
            _compare(sim, w, d, tol, f"world {w} after control step {t + 1}")
    assert sim.time[0].item() == pytest.approx(n_steps * emb.control_dt, abs=1e-6)
    # different controls really drove the worlds apart (the test compares two distinct trajectories)
    assert np.abs(ds[0].qpos - ds[1].qpos).max() > 10 * tol[0]
    assert not torch.equal(sim.qpos[0], sim.qpos[1])


def test_initial_state_matches_c_mujoco(arm26, backend):
    sim = make_sim(arm26, 2, backend)
    d = mj_default_data(arm26.model)
    for w in range(2):
        np.testing.assert_allclose(as_np(sim.qpos[w]), d.qpos, atol=1e-7)
        np.testing.assert_allclose(as_np(sim.actuator_length[w]), d.actuator_length, atol=1e-6)
        np.testing.assert_allclose(as_np(sim.site_xpos[w]), d.site_xpos, atol=1e-6)
    torch.testing.assert_close(sim.default_qpos, torch.as_tensor(d.qpos, dtype=torch.float32))
    assert arm26.model.nkey > 0  # arm26 starts from its keyframe, not qpos0
    assert not np.allclose(d.qpos, arm26.model.qpos0)


def test_views_have_documented_shapes(arm26, backend):
    n, m = 3, arm26.model
    sim = make_sim(arm26, n, backend)
    assert isinstance(sim, Simulator) and sim.backend == backend
    expected = {"qpos": (n, m.nq), "qvel": (n, m.nv), "act": (n, m.na), "ctrl": (n, m.nu),
                "actuator_length": (n, m.nu), "actuator_velocity": (n, m.nu), "actuator_force": (n, m.nu),
                "xpos": (n, m.nbody, 3), "xquat": (n, m.nbody, 4), "site_xpos": (n, m.nsite, 3),
                "cvel": (n, m.nbody, 6), "sensordata": (n, m.nsensordata), "time": (n,)}
    assert set(expected) == set(STATE_VIEWS)
    for name, shape in expected.items():
        view = getattr(sim, name)
        assert tuple(view.shape) == shape, name
        assert view.device == torch.device("cpu")
        assert view.dtype == torch.float32, name
    # writing a state view changes what the simulator computes from
    before = sim.xpos.clone()
    sim.qpos[1, 0] = 0.123
    sim.forward_kinematics()
    if backend == "warp":  # zero-copy
        assert sim.d.qpos.numpy()[1, 0] == pytest.approx(0.123)
    else:
        assert sim.datas[1].qpos[0] == pytest.approx(0.123)
    assert sim.qpos[1, 0].item() == pytest.approx(0.123)
    assert not torch.equal(sim.xpos[1], before[1]) and torch.equal(sim.xpos[0], before[0])


def test_parity_arm26(arm26, backend):
    _run_parity(arm26, backend, num_worlds=2)


@pytest.mark.slow
def test_parity_bimanual(bimanual, backend):
    _run_parity(bimanual, backend, num_worlds=2, n_steps=20)


def _reset_state(emb, seed=0):
    """A valid non-default state for world 0: qpos inside the joint ranges, some speed, some activation."""
    m = emb.model
    rng = np.random.default_rng(seed)
    d = mj_default_data(m)
    qpos = d.qpos.copy()
    for j in range(m.njnt):
        if m.jnt_type[j] in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE):
            lo, hi = m.jnt_range[j] if m.jnt_limited[j] else (-1.0, 1.0)
            qpos[m.jnt_qposadr[j]] = rng.uniform(lo + 0.2 * (hi - lo), hi - 0.2 * (hi - lo))
    qvel = rng.uniform(-0.5, 0.5, m.nv)
    act = rng.uniform(0.1, 0.9, m.na)
    return qpos, qvel, act


def _check_masked_reset(emb, backend: str, n_before: int = 5) -> None:
    m = emb.model
    sim = make_sim(emb, 2, backend)
    rng = np.random.default_rng(3)
    for _ in range(n_before):
        sim.step(torch.as_tensor(rng.uniform(0, 1, (2, m.nu)), dtype=torch.float32))
    keep = {k: getattr(sim, k)[1].clone() for k in ("qpos", "qvel", "act", "ctrl", "time")}
    keep["qacc_warmstart"] = torch.as_tensor(warmstart(sim, 1))
    assert sim.time[0].item() > 0

    qpos, qvel, act = _reset_state(emb)
    mask = torch.tensor([True, False])
    f32 = torch.float32
    sim.reset(mask, qpos=torch.as_tensor(qpos, dtype=f32)[None], qvel=torch.as_tensor(qvel, dtype=f32)[None],
              act=torch.as_tensor(act, dtype=f32)[None])  # (mask.sum(), width) rows

    # world 1: untouched, bit for bit
    for k in ("qpos", "qvel", "act", "ctrl", "time"):
        assert torch.equal(getattr(sim, k)[1], keep[k]), f"{k} of the world not reset changed"
    assert torch.equal(torch.as_tensor(warmstart(sim, 1)), keep["qacc_warmstart"])

    # world 0: the given state at time 0, control and warm start cleared, derived quantities as mj_forward
    d = mujoco.MjData(m)
    d.qpos[:], d.qvel[:], d.act[:] = qpos, qvel, act
    mujoco.mj_forward(m, d)
    assert sim.time[0].item() == 0.0
    assert torch.count_nonzero(sim.ctrl[0]) == 0
    assert np.count_nonzero(warmstart(sim, 0)) == 0
    np.testing.assert_allclose(as_np(sim.qpos[0]), qpos, atol=1e-6)
    np.testing.assert_allclose(as_np(sim.qvel[0]), qvel, atol=1e-6)
    np.testing.assert_allclose(as_np(sim.act[0]), act, atol=1e-6)
    np.testing.assert_allclose(as_np(sim.actuator_length[0]), d.actuator_length, rtol=0, atol=1e-5)
    np.testing.assert_allclose(as_np(sim.site_xpos[0]), d.site_xpos, rtol=0, atol=1e-5)
    np.testing.assert_allclose(as_np(sim.xpos[0]), d.xpos, rtol=0, atol=1e-5)
    np.testing.assert_allclose(as_np(sim.actuator_velocity[0]), d.actuator_velocity, rtol=0, atol=1e-4)
    fmax = np.abs(d.actuator_force).max()
    np.testing.assert_allclose(as_np(sim.actuator_force[0]), d.actuator_force, rtol=0, atol=1e-4 * fmax)
    assert not sim.unstable.any()


def test_masked_reset_arm26(arm26, backend):
    _check_masked_reset(arm26, backend)


@pytest.mark.slow
def test_masked_reset_bimanual(bimanual, backend):
    _check_masked_reset(bimanual, backend, n_before=3)


def test_masked_reset_then_continue_matches_c_mujoco(arm26, backend):
    """After a partial reset the reset world follows C MuJoCo from the new state, and the other world's
    trajectory is exactly the one it would have had without the reset."""
    m = arm26.model
    sim, ref = make_sim(arm26, 2, backend), make_sim(arm26, 2, backend)
    rng = np.random.default_rng(7)
    ctrls = [torch.as_tensor(rng.uniform(0, 1, (2, m.nu)), dtype=torch.float32) for _ in range(16)]
    for c in ctrls[:6]:
        sim.step(c)
        ref.step(c)
    qpos, qvel, act = _reset_state(arm26, seed=1)
    sim.reset(torch.tensor([True, False]), qpos=torch.as_tensor(qpos, dtype=torch.float32),
              qvel=torch.as_tensor(qvel, dtype=torch.float32), act=torch.as_tensor(act, dtype=torch.float32))
    d = mujoco.MjData(m)
    d.qpos[:], d.qvel[:], d.act[:] = qpos, qvel, act
    mujoco.mj_forward(m, d)
    for t, c in enumerate(ctrls[6:]):
        sim.step(c)
        ref.step(c)
        _mj_control_step(arm26, d, c[0].double().numpy())
        _compare(sim, 0, d, TOLERANCES[backend, "arm26"], f"reset world, step {t + 1} after the reset")
        for k in ("qpos", "qvel", "act", "actuator_force", "time"):
            assert torch.equal(getattr(sim, k)[1], getattr(ref, k)[1]), f"{k} of the world not reset diverged"


def test_reset_to_default_state(arm26, backend):
    sim = make_sim(arm26, 3, backend)
    for _ in range(4):
        sim.step(torch.rand(3, sim.nu))
    before = sim.qpos.clone()
    sim.reset(torch.tensor([False, True, True]))
    torch.testing.assert_close(sim.qpos[1:], sim.default_qpos.expand(2, -1))
    assert torch.count_nonzero(sim.qvel[1:]) == 0
    torch.testing.assert_close(sim.act[1:], sim.default_act.expand(2, -1))
    assert torch.equal(sim.time[1:], torch.zeros(2))
    assert torch.equal(sim.qpos[0], before[0])


def test_reset_accepts_full_batch_rows(arm26, backend):
    sim = make_sim(arm26, 2, backend)
    sim.step(torch.rand(2, sim.nu))
    q = torch.tensor([[0.3, 0.4], [0.5, 0.6]])
    world1 = sim.qpos[1].clone()
    sim.reset(torch.tensor([True, False]), qpos=q)  # (N, nq): only the masked rows are used
    torch.testing.assert_close(sim.qpos[0], q[0])
    assert torch.equal(sim.qpos[1], world1)


@pytest.mark.parametrize("bad", ["mask", "qpos", "ctrl"])
def test_bad_shapes_raise(arm26, bad, backend):
    sim = make_sim(arm26, 2, backend)
    with pytest.raises(ValueError):
        if bad == "mask":
            sim.reset(torch.tensor([True, False, True]))
        elif bad == "qpos":
            sim.reset(torch.tensor([True, False]), qpos=torch.zeros(2, 5))
        else:
            sim.step(torch.zeros(2, sim.nu + 1))


def test_num_worlds_must_be_positive(arm26, backend):
    with pytest.raises(ValueError, match="num_worlds"):
        make_sim(arm26, 0, backend)


# ------------------------------------------------------------------ the C backend's pool, and C vs warp
def _random_run(sim, steps: int, seed: int, reset_every: int = 0) -> list[dict]:
    """Steps with random excitations (and a partial reset every ``reset_every`` steps); the views after each."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for t in range(steps):
        sim.step(torch.rand(sim.num_worlds, sim.nu, generator=gen))
        if reset_every and (t + 1) % reset_every == 0:
            sim.reset(torch.rand(sim.num_worlds, generator=gen) < 0.3)
        out.append({k: getattr(sim, k).clone() for k in STATE_VIEWS})
    return out


@pytest.mark.parametrize("model", ["arm26", "bimanual_nofingers"])
def test_c_backend_one_and_many_threads_are_identical(model, request):
    """The partition of worlds into threads does not change any world's physics, bit for bit."""
    emb = request.getfixturevalue(model)
    n, steps = (7, 12) if model == "arm26" else (5, 4)
    runs = [_random_run(MujocoSim(emb, n, threads=k), steps, seed=5, reset_every=3) for k in (1, 2, 3)]
    assert runs[0][-1]["time"].max() > 0
    for other in runs[1:]:
        for t, (a, b) in enumerate(zip(runs[0], other)):
            for k in STATE_VIEWS:
                assert torch.equal(a[k], b[k]), f"{k} differs at step {t + 1}"


@pytest.mark.parametrize("model,steps", [("arm26", 10), pytest.param("bimanual_nofingers", 10, marks=pytest.mark.slow)])
def test_c_and_warp_agree_over_ten_control_steps(model, steps, request):
    """From the same (non-default) state and with the same excitations, the two backends stay within float32
    tolerance of each other for 10 control steps."""
    emb = request.getfixturevalue(model)
    c, w = MujocoSim(emb, 2, threads=2), WarpSim(emb, 2)
    qpos, qvel, act = (torch.as_tensor(x, dtype=torch.float32) for x in _reset_state(emb, seed=4))
    for sim in (c, w):
        sim.reset(torch.ones(2, dtype=torch.bool), qpos=qpos, qvel=qvel, act=act)
    gen = torch.Generator().manual_seed(9)
    tol = TOLERANCES["warp", "bimanual" if "bimanual" in model else "arm26"]
    for t in range(steps):
        ctrl = torch.rand(2, emb.model.nu, generator=gen)
        c.step(ctrl)
        w.step(ctrl)
        where = f"{model}, control step {t + 1}"
        for k, atol in (("qpos", tol[0]), ("qvel", tol[1]), ("act", tol[2]), ("site_xpos", tol[0]),
                        ("actuator_length", tol[0])):
            torch.testing.assert_close(getattr(w, k), getattr(c, k), rtol=0, atol=atol,
                                       msg=lambda m, k=k: f"{k} at {where}: {m}")
        fmax = c.actuator_force.abs().max()
        torch.testing.assert_close(w.actuator_force, c.actuator_force, rtol=0, atol=float(tol[3] * fmax))
    assert (c.qpos - qpos).abs().max() > 10 * tol[0]  # it moved: the comparison is not of two still states
