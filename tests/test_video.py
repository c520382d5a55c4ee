"""Videos of a policy: the mp4s decode (PyAV, the encoder's own package) to the frames played at the size asked,
the reference ghost is really drawn, recording leaves the metrics as they are, the TensorBoard video of
``video_every``, and the one-line errors (bad size or path, unwritable folder, no OpenGL)."""

from __future__ import annotations

import io
import json

import av
import mujoco
import numpy as np
import pytest
from helpers import refuse_writes_in
from PIL import Image

from mmimic.cli import VIDEO_DEFAULTS, main
from mmimic.config import load_config
from mmimic.eval import video
from mmimic.eval.play import clip_steps, eval_env, load_run, play_clips, policy
from mmimic.motion.demo import ensure_demo_library
from mmimic.rl.trainer import Trainer, TrainConfig

SMALL = ["--width", "160", "--height", "120"]


def _gl_problem() -> str | None:
    try:
        video.check_gl()
    except RuntimeError as exc:
        return str(exc)
    return None


GL = _gl_problem()
needs_gl = pytest.mark.skipif(GL is not None, reason=f"no OpenGL to render with: {GL}")


def _decode(path) -> tuple[list[np.ndarray], str]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, stream.codec_context.name


@pytest.fixture(scope="module")
def arm_motions(tmp_path_factory):
    return ensure_demo_library("arm26", tmp_path_factory.mktemp("data"), log=lambda *_: None)


@pytest.fixture(scope="module")
def run(arm_motions, tmp_path_factory):
    """One training iteration with video_every=1: a checkpoint, and the iteration's video."""
    if GL is not None:
        pytest.skip(f"no OpenGL to render with: {GL}")
    cfg = load_config(TrainConfig, "experiments/smoke.yaml", [
        f"env.motions={arm_motions}", f"out_dir={tmp_path_factory.mktemp('runs')}", "env.device=cpu",
        "env.num_envs=4", "ppo.rollout_steps=4", "ppo.minibatches=1", "iterations=1", "video_every=1",
        f"eval_motions={arm_motions}"])
    lines = []
    trainer = Trainer(cfg, log=lines.append)
    trainer.train()
    trainer.log_lines = lines
    return trainer


@needs_gl
def test_the_reference_ghost_is_drawn_and_the_callers_model_is_untouched(arm26):
    model = arm26.model
    qpos = model.qpos0.copy()
    with video.BodyView(model, 160, 120) as view:
        bare = view.draw(qpos)
        over = view.draw(qpos, ref_qpos=qpos)  # overlaid on the body
        apart = view.draw(qpos, ref_qpos=qpos + 0.8)  # a pose of its own
        text = view.draw(qpos, text=["reach_0  0.00 / 3.97 s"])

    def green(f):  # the ghost's colour: green well above red and blue
        f = f.astype(int)
        return int(((f[..., 1] > f[..., 0] + 40) & (f[..., 1] > f[..., 2] + 40)).sum())

    assert bare.shape == (120, 160, 3) and bare.dtype == np.uint8
    assert green(bare) == 0 and green(over) > 100 and green(apart) > 100
    assert not np.array_equal(over, apart)
    assert np.abs(text[:20, :80].astype(int) - bare[:20, :80]).sum() > 0  # text at the top left
    assert np.array_equal(text[60:], bare[60:])  # ...and only there
    with video.BodyView(model, 720, 540) as view:  # beyond the model's 640x480 offscreen buffer
        assert view.draw(qpos).shape == (540, 720, 3)
    assert model.vis.global_.offwidth == 640


@needs_gl
def test_the_camera_follows_a_free_root(myofullbody):
    model = myofullbody.model
    qpos = model.key_qpos[0].copy() if model.nkey else model.qpos0.copy()
    with video.BodyView(model, 64, 48) as view:
        here = view.draw(qpos)
        start = view.camera.lookat.copy()
        qpos[:2] += (3.3, -2.1)  # the root walks 3.9 m away
        there = view.draw(qpos)
        assert view.camera.lookat[:2] == pytest.approx(start[:2] + (3.3, -2.1), abs=1e-6)
        assert view.camera.lookat[2] == pytest.approx(start[2])  # height stays: no bobbing with the pelvis

    def muscles(f):  # red pixels: the muscle paths (a camera left behind sees a third of them)
        f = f.astype(int)
        return int((f[..., 0] > f[..., 1] + 60).sum())

    assert muscles(here) > 50 and muscles(there) >= 0.8 * muscles(here)


@needs_gl
def test_recording_keeps_the_metrics_and_draws_every_kth_step(run, arm_motions, tmp_path):
    cfg, state, path = load_run(run.run_dir)
    env = eval_env(cfg, arm_motions, "cpu", num_envs=1, max_site_error=0.0)
    act = policy(cfg, state, path, env)
    plain = play_clips(env, act, clips=[2])[0]
    rows = video.record_clips(env, act, tmp_path / "v.mp4", clips=[2], width=64, height=48, fps=25.0)
    steps = int(clip_steps(env)[2])
    assert video.frame_stride(env.task.dt, 25.0) == 4
    assert rows[0]["steps"] == steps and rows[0]["frames"] == steps // 4 + 1
    for key in ("site_rel_error_m", "joint_pos_error_rad", "frame_coverage"):
        assert rows[0][key] == plain[key], key
    info = video.video_info(tmp_path / "v.mp4")
    assert info == {"frames": steps // 4 + 1, "width": 64, "height": 48, "codec": "h264", "fps": 25.0}
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]  # no temp file left
    with pytest.raises(ValueError, match="one clip at a time: the env has 3 worlds, expected 1"):
        video.record_clips(eval_env(cfg, arm_motions, "cpu"), act, tmp_path / "w.mp4")
    with pytest.raises(ValueError, match=r"clips \[3\]: expected indices from 0 to 2"):
        video.record_clips(env, act, tmp_path / "w.mp4", clips=[3])
    assert not (tmp_path / "w.mp4").exists()


@needs_gl
def test_play_writes_an_h264_mp4_of_the_played_steps(run, arm_motions, tmp_path, capsys):
    out = tmp_path / "new" / "play.mp4"
    assert main(["play", str(run.run_dir), "--motions", str(arm_motions), "--clips", "reach_1", "--video", str(out),
                 "--fps", "100", "--no-termination", *SMALL]) == 0
    cfg, _, _ = load_run(run.run_dir)
    steps = int(clip_steps(eval_env(cfg, arm_motions, "cpu", num_envs=1))[1])
    frames, codec = _decode(out)
    assert codec == "h264" and len(frames) == steps + 1  # the start, then every step (100 Hz control)
    assert frames[0].shape == (120, 160, 3)
    captured = capsys.readouterr()
    assert f"{steps + 1} frames, 160x120" in captured.out and "reach_1: " in captured.err


@needs_gl
def test_eval_video_k_renders_the_worst_clips(run, arm_motions, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", str(run.run_dir), "--motions", str(arm_motions), "--out", str(out), "--video", "1",
                 "--no-termination", *SMALL]) == 0
    result = json.loads((out / "metrics.json").read_text())
    worst = max(result["clips"], key=lambda name: result["clips"][name]["site_rel_error_m"])
    [entry] = result["videos"]
    assert entry["clip"] == worst and entry["path"] == f"videos/{worst}.mp4"
    frames, codec = _decode(out / entry["path"])
    assert codec == "h264" and len(frames) == entry["frames"] == entry["steps"] // 3 + 1  # 30 fps of 100 Hz
    assert frames[0].shape == (120, 160, 3) and sorted(p.name for p in (out / "videos").iterdir()) == [f"{worst}.mp4"]


@needs_gl
def test_video_every_writes_the_mp4_and_a_tensorboard_video(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [mp4] = sorted((run.run_dir / "videos").glob("*.mp4"))
    assert mp4.name == "iter_000001.mp4" and any(line.startswith("video at iteration 1:") for line in run.log_lines)
    frames, _ = _decode(mp4)
    assert frames[0].shape == (240, 320, 3)
    acc = EventAccumulator(str(run.run_dir), size_guidance={"images": 0})
    acc.Reload()
    [event] = acc.Images("videos/eval")
    gif = Image.open(io.BytesIO(event.encoded_image_string))
    assert gif.format == "GIF" and gif.n_frames == len(frames) and gif.size == (160, 120)


@needs_gl
def test_bad_video_options_fail_with_one_line_before_playing(run, arm_motions, tmp_path, monkeypatch):
    base = ["play", str(run.run_dir), "--motions", str(arm_motions)]
    with pytest.raises(SystemExit, match=r"mmimic play: video width 161: expected an even number of pixels") as exc:
        main([*base, "--video", str(tmp_path / "a.mp4"), "--width", "161"])
    assert isinstance(exc.value.code, str)  # printed, exit status 1
    with pytest.raises(SystemExit, match=r"mmimic play: video .*a\.avi: expected a path ending in \.mp4"):
        main([*base, "--video", str(tmp_path / "a.avi")])
    with pytest.raises(SystemExit, match="mmimic play: --clips: unknown clip.*nope; the motions have: reach_0"):
        main([*base, "--video", str(tmp_path / "a.mp4"), "--clips", "nope", *SMALL])
    with pytest.raises(SystemExit) as exc:  # argparse: exit status 2
        main([*base, "--video", str(tmp_path / "a.mp4"), "--fps", "0"])
    assert exc.value.code == 2
    locked = tmp_path / "locked"
    locked.mkdir()
    refuse_writes_in(monkeypatch, locked)
    with pytest.raises(SystemExit, match=r"mmimic play: output directory .*locked: not writable"):
        main([*base, "--video", str(locked / "a.mp4")])
    assert list(locked.iterdir()) == [] and not (tmp_path / "a.mp4").exists()
    assert VIDEO_DEFAULTS == (*video.DEFAULT_SIZE, video.DEFAULT_FPS)


def test_no_opengl_gives_one_line_that_says_what_was_tried_and_what_to_install(monkeypatch, tmp_path):
    def no_context(*_a, **_k):
        raise RuntimeError("Cannot initialize a EGL device display.\nmore detail")

    monkeypatch.setattr(mujoco, "Renderer", no_context)
    monkeypatch.setattr(video, "probe_gl", lambda backend: f"{backend} failed too")
    monkeypatch.setenv("MUJOCO_GL", "egl")
    with pytest.raises(RuntimeError) as exc:
        video.check_gl()
    msg = str(exc.value)
    assert "\n" not in msg and "MUJOCO_GL=egl: Cannot initialize a EGL device display" in msg
    assert "MUJOCO_GL=osmesa: osmesa failed too" in msg and "MUJOCO_GL=glfw: glfw failed too" in msg
    assert "apt install libegl1 libgl1-mesa-dri" in msg and "libosmesa6" in msg
    # another backend works in a fresh process: the message says which one to set
    monkeypatch.setattr(video, "probe_gl", lambda backend: None if backend == "osmesa" else "no")
    with pytest.raises(RuntimeError, match="MUJOCO_GL=osmesa works on this machine: set it"):
        video.check_gl()
    # the CLI: one line, before anything is loaded or played
    monkeypatch.setattr(video, "probe_gl", lambda backend: "no")
    with pytest.raises(SystemExit, match="mmimic play: cannot render: no OpenGL backend works"):
        main(["play", str(tmp_path / "no-run"), "--video", str(tmp_path / "a.mp4")])


@needs_gl
def test_probe_gl_runs_a_backend_in_a_fresh_process():
    assert video.probe_gl("egl") is None  # the backend that works on these machines (and in CI)
    assert "invalid value for environment variable MUJOCO_GL" in video.probe_gl("nonsense")


def test_video_checks():
    video.check_video_args(160, 120, 30.0)
    for bad in ((161, 120, 30.0), (160, 16, 30.0), (160, 120, 0.0), (160, 120, float("nan"))):
        with pytest.raises(ValueError, match="video (width|height|fps)"):
            video.check_video_args(*bad)
    assert video.safe_name("walk/fast run.npz") == "walk_fast_run.npz" and video.safe_name("..") == "clip"
    assert video.frame_stride(0.01, 30.0) == 3 and video.frame_stride(0.01, 100.0) == 1
    assert video.frame_stride(0.01, 1000.0) == 1
