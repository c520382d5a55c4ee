"""The embodiment registry: names, sizes, finger removal, simulation options and their validation."""

import json

import mujoco
import numpy as np
import pytest

from mmimic.embodiments import (
    EmbodimentConfig,
    EmbodimentInfo,
    embodiment_info,
    known_embodiments,
    load_embodiment,
    register,
)
from mmimic.embodiments.registry import _MYO_FINGER_JOINT


def test_registry_lists_the_models():
    names = known_embodiments()
    assert {"arm26", "bimanual", "myofullbody"} <= set(names)
    assert names == sorted(names)
    for name in ("arm26", "bimanual", "myofullbody"):
        assert embodiment_info(name).name == name


def test_unknown_name_raises_keyerror_listing_known_names():
    with pytest.raises(KeyError) as exc:
        load_embodiment("no_such_model")
    msg = str(exc.value)
    assert "no_such_model" in msg
    for name in ("arm26", "bimanual", "myofullbody"):
        assert name in msg
    with pytest.raises(KeyError, match="known: .*arm26"):
        embodiment_info("nope")


def test_register_rejects_duplicate_name():
    with pytest.raises(ValueError, match="arm26"):
        register(EmbodimentInfo(name="arm26", xml_path=lambda: None, description="dup", default_substeps=1))


def test_arm26_sizes_and_defaults(arm26):
    m = arm26.model
    assert arm26.name == "arm26"
    assert (m.nu, m.na, m.nq, m.nv) == (6, 6, 2, 2)
    assert not arm26.free_root
    assert arm26.substeps == embodiment_info("arm26").default_substeps == 5
    assert arm26.control_dt == pytest.approx(m.opt.timestep * 5)
    assert all(m.actuator_dyntype == mujoco.mjtDyn.mjDYN_MUSCLE)
    np.testing.assert_array_equal(m.actuator_ctrlrange, np.tile([0.0, 1.0], (6, 1)))
    assert len(arm26.muscle_names) == 6 and len(set(arm26.muscle_names)) == 6
    assert arm26.joint_names == ["shoulder", "elbow"]
    assert arm26.removed_joints == [] and arm26.removed_actuators == []


def test_arm26_accepts_config_object():
    emb = load_embodiment(EmbodimentConfig(name="arm26", substeps=3))
    assert emb.substeps == 3
    emb = load_embodiment()  # default config: arm26
    assert emb.name == "arm26"


@pytest.mark.slow
def test_bimanual_sizes(bimanual):
    m = bimanual.model
    assert (m.nu, m.nq) == (126, 76)
    assert m.na == 126
    assert not bimanual.free_root
    assert bimanual.substeps == 5


@pytest.mark.slow
def test_bimanual_remove_fingers(bimanual, bimanual_nofingers):
    full, emb = bimanual.model, bimanual_nofingers.model
    assert (emb.nu, emb.nq) == (64, 36)
    assert emb.na == 64 and emb.nv == 36
    assert len(bimanual_nofingers.removed_actuators) == 126 - 64
    assert len(bimanual_nofingers.removed_joints) == 76 - 36
    assert all(_MYO_FINGER_JOINT.match(j) for j in bimanual_nofingers.removed_joints)
    assert not any(_MYO_FINGER_JOINT.match(j) for j in bimanual_nofingers.joint_names)
    assert not set(bimanual_nofingers.removed_actuators) & set(bimanual_nofingers.muscle_names)
    # the finger bodies stay (mass and shape of the hand); only their joints go
    assert emb.nbody == full.nbody
    assert emb.body_mass.sum() == pytest.approx(full.body_mass.sum())
    # the stripped model still simulates
    d = mujoco.MjData(emb)
    d.ctrl[:] = 0.5
    for _ in range(10):
        mujoco.mj_step(emb, d)
    assert np.isfinite(d.qpos).all() and np.isfinite(d.act).all()


@pytest.mark.slow
def test_myofullbody_sizes(myofullbody, myofullbody_nofingers):
    m = myofullbody.model
    assert (m.nu, m.nq, m.nv) == (416, 129, 128)
    assert myofullbody.free_root
    assert myofullbody.substeps == 10
    mn = myofullbody_nofingers.model
    assert (mn.nu, mn.nq, mn.nv) == (354, 89, 88)
    assert myofullbody_nofingers.free_root
    # keyframes shrink with the state
    assert mn.nkey == m.nkey >= 1
    assert mn.key_qpos.shape == (mn.nkey, 89)
    keep = [m.joint(j).name not in set(myofullbody_nofingers.removed_joints) for j in range(m.njnt)]
    kept_qpos = np.concatenate([m.key_qpos[0, m.jnt_qposadr[j]:m.jnt_qposadr[j] + (7 if j == 0 else 1)]
                                for j in range(m.njnt) if keep[j]])
    np.testing.assert_allclose(mn.key_qpos[0], kept_qpos)


def test_options_land_in_model_and_embodiment():
    emb = load_embodiment("arm26", timestep=0.004, substeps=3, solver_iterations=7, ls_iterations=4)
    assert emb.model.opt.timestep == pytest.approx(0.004)
    assert emb.model.opt.iterations == 7
    assert emb.model.opt.ls_iterations == 4
    assert emb.substeps == 3
    assert emb.control_dt == pytest.approx(0.012)
    emb = load_embodiment("arm26", nconmax=64, njmax=32)
    assert (emb.nconmax, emb.njmax) == (64, 32)
    # None keeps the XML's values
    default = load_embodiment("arm26")
    assert default.nconmax is None and default.njmax is None
    xml = mujoco.MjModel.from_xml_path(str(embodiment_info("arm26").xml_path()))
    assert default.model.opt.timestep == xml.opt.timestep
    assert default.model.opt.iterations == xml.opt.iterations


@pytest.mark.slow
def test_options_on_large_model():
    emb = load_embodiment("myofullbody", timestep=0.002, substeps=4, solver_iterations=5, ls_iterations=3)
    assert emb.model.opt.timestep == pytest.approx(0.002)
    assert (emb.model.opt.iterations, emb.model.opt.ls_iterations, emb.substeps) == (5, 3, 4)
    assert emb.control_dt == pytest.approx(0.008)


@pytest.mark.parametrize("option, value", [
    ("timestep", 0), ("timestep", -0.001), ("timestep", float("nan")),
    ("substeps", 0), ("substeps", -2), ("substeps", 2.5),
    ("solver_iterations", 0), ("ls_iterations", 0),
    ("nconmax", -1), ("njmax", -1), ("njmax", 0), ("njmax", 3.0),
])
def test_bad_option_values_raise_valueerror_naming_option(option, value):
    with pytest.raises(ValueError, match=option):
        load_embodiment("arm26", **{option: value})


def test_unknown_option_raises_typeerror():
    with pytest.raises(TypeError):
        load_embodiment("arm26", no_such_option=1)


def test_remove_fingers_on_arm26_raises():
    with pytest.raises(ValueError, match="arm26"):
        load_embodiment("arm26", remove_fingers=True)


def test_a_broken_smpl_map_is_a_clear_error(tmp_path, monkeypatch):
    from mmimic.embodiments import smpl_map

    good = json.loads((smpl_map.MAPS_DIR / "bimanual.json").read_text())
    monkeypatch.setattr(smpl_map, "MAPS_DIR", tmp_path)
    (tmp_path / "bad.json").write_text("{ not json")
    with pytest.raises(ValueError, match=r"bad.json: not valid JSON"):
        smpl_map.load_smpl_map("bad")
    for field, value in (("weight", -1.0), ("weight", "heavy"), ("offset", [0.0, 1.0])):
        broken = json.loads(json.dumps(good))
        broken["keypoints"][1][field] = value
        (tmp_path / "bad.json").write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=r"bad.json: keypoints\[1\].*weight must be a number > 0"):
            smpl_map.load_smpl_map("bad")
