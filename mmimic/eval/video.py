"""Videos of a policy: MuJoCo's own renderer (headless, EGL by default) and an H.264 mp4 encoder from a pip
package (PyAV, whose wheels bundle FFmpeg with libx264: no system ffmpeg).

What a frame shows: the policy's body (muscles coloured by activation, MuJoCo's convention: red = active)
and the reference pose as a translucent green ghost *overlaid* at the same place, so a tracking error is
the body leaving its ghost (``ghost_offset`` moves the ghost beside it instead); the clip's name, its time
and the errors of the step as text. The camera is the model's default free camera; for a free root it
follows the root in the ground plane (fixed-root models: a fixed camera looking at the model).

Recording never changes what is played: frames are drawn from a host copy of one world's state after each
step, through ``play_clips(on_step=...)``, and only while a video is being made.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
import re
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import mujoco
import numpy as np

GL_BACKENDS = ("egl", "osmesa", "glfw")  # tried in this order when the one of this process fails
GL_HELP = ("install EGL (Debian/Ubuntu: apt install libegl1 libgl1-mesa-dri; MUJOCO_GL=egl, the default) or "
           "OSMesa (apt install libosmesa6, then MUJOCO_GL=osmesa), or on a desktop set MUJOCO_GL=glfw")
GHOST_RGBA = (0.2, 0.85, 0.3, 0.35)  # the reference: translucent green
MIN_SIZE, MAX_SIZE = 32, 4096  # pixels; H.264 in yuv420p also wants even sizes
DEFAULT_SIZE = (640, 480)
DEFAULT_FPS = 30.0
SOFTWARE_GL = ("llvmpipe", "softpipe", "swrast", "osmesa")  # CPU rasterizers (Mesa): no multisampling there


# ---------------------------------------------------------------------------------------------- OpenGL
def probe_gl(backend: str, timeout_s: float = 60.0) -> str | None:
    """None if a small MuJoCo renderer works with ``MUJOCO_GL=backend``, else why not (one line). Runs in a
    fresh process: MuJoCo fixes its GL backend when it is first imported, so one process cannot try two."""
    code = ("import mujoco; m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\"1\"/>"
            "</worldbody></mujoco>'); r = mujoco.Renderer(m, 16, 16); r.update_scene(mujoco.MjData(m)); "
            "r.render(); r.close()")
    env = {**os.environ, "MUJOCO_GL": backend}
    env.pop("PYOPENGL_PLATFORM", None)
    try:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {done.returncode}"


def gl_error(exc: BaseException, probe=None) -> RuntimeError:
    """The one-line error for a renderer that could not be made: what this process used and why it failed,
    the other backends tried (each in a fresh process, ``probe``: :func:`probe_gl`), and what to set or install."""
    probe = probe or probe_gl
    current = os.environ.get("MUJOCO_GL", "").strip().lower()
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    tried = [f"MUJOCO_GL={current or '(unset)'}: {first}"]
    for backend in GL_BACKENDS:
        if backend == current:
            continue
        why = probe(backend)
        if why is None:
            return RuntimeError(f"cannot render: no OpenGL context ({tried[0]}); MUJOCO_GL={backend} works on this "
                                f"machine: set it (export MUJOCO_GL={backend}) and run again")
        tried.append(f"MUJOCO_GL={backend}: {why}")
    return RuntimeError(f"cannot render: no OpenGL backend works for headless rendering (tried {'; '.join(tried)}); "
                        f"{GL_HELP}")


def open_renderer(model: mujoco.MjModel, width: int, height: int) -> mujoco.Renderer:
    """``mujoco.Renderer`` of ``width`` x ``height``, or the one-line error of :func:`gl_error`."""
    try:
        return mujoco.Renderer(model, height=int(height), width=int(width))
    except Exception as exc:  # ImportError (no GL library), mujoco.FatalError, RuntimeError (no display / device)
        raise gl_error(exc) from None


def gl_renderer_name() -> str:
    """The current OpenGL context's renderer (e.g. ``llvmpipe (LLVM 15.0.6, 256 bits)``), '' if unknown."""
    try:
        from OpenGL import GL

        name = GL.glGetString(GL.GL_RENDERER)
        return name.decode(errors="replace") if isinstance(name, bytes) else str(name or "")
    except Exception:  # noqa: BLE001 - only an optimisation depends on it
        return ""


def check_gl() -> None:
    """Fail now, with the message of :func:`gl_error`, if this process cannot render (before a long run)."""
    model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom size='1'/></worldbody></mujoco>")
    open_renderer(model, MIN_SIZE, MIN_SIZE).close()


def check_video_path(path: str | os.PathLike) -> Path:
    """An ``.mp4`` path whose folder exists (made if missing) and takes files; else ValueError naming it."""
    from mmimic.motion.motion_file import prepare_output_dir

    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"video {path}: expected a path ending in .mp4")
    if path.is_dir():
        raise ValueError(f"video {path}: is a directory, expected a .mp4 file path")
    prepare_output_dir(path.parent)
    return path


def check_video_args(width: int, height: int, fps: float) -> None:
    """Sizes H.264 (yuv420p) can take and a positive frame rate; ValueError naming the option."""
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, numbers.Integral) or not MIN_SIZE <= value <= MAX_SIZE or value % 2:
            raise ValueError(f"video {name} {value!r}: expected an even number of pixels from {MIN_SIZE} to "
                             f"{MAX_SIZE} (H.264 in yuv420p)")
    if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"video fps {fps!r}: expected a number > 0")


# ---------------------------------------------------------------------------------------------- drawing
class BodyView:
    """Draws one world: the body from its ``qpos`` (and ``act``: muscle colours), the reference as a
    translucent ghost from its ``qpos``, the camera, and text lines. One OpenGL context; ``close()`` it."""

    def __init__(self, model: mujoco.MjModel, width: int = DEFAULT_SIZE[0], height: int = DEFAULT_SIZE[1],
                 ghost_rgba=GHOST_RGBA, ghost_offset=(0.0, 0.0, 0.0)):
        check_video_args(width, height, DEFAULT_FPS)
        self.model = m = copy.copy(model)  # our own: the offscreen buffer may grow, the caller's stays as it was
        m.vis.global_.offwidth = max(int(m.vis.global_.offwidth), width)
        m.vis.global_.offheight = max(int(m.vis.global_.offheight), height)
        self.width, self.height = width, height
        self.data, self.ref = mujoco.MjData(m), mujoco.MjData(m)
        self.ghost_rgba = np.asarray(ghost_rgba, dtype=np.float32)
        self.ghost_offset = np.asarray(ghost_offset, dtype=np.float64)
        free = m.njnt > 0 and m.jnt_type[0] == mujoco.mjtJoint.mjJNT_FREE
        self.root_body = int(m.jnt_bodyid[0]) if free else -1
        self.camera = mujoco.MjvCamera()
        mujoco.mjv_defaultFreeCamera(m, self.camera)  # the model's own view angles and, for free roots, distance
        if self.root_body < 0:
            self._frame_moving_parts()
        self.body_opt = mujoco.MjvOption()
        self.body_opt.sitegroup[:] = 0  # wrapping sites would hide the body
        self.body_opt.flags[mujoco.mjtVisFlag.mjVIS_ACTIVATION] = 1
        self.ghost_opt = mujoco.MjvOption()  # the ghost: bodies only, no muscles, sites or actuators
        self.ghost_opt.sitegroup[:] = 0
        for flag in (mujoco.mjtVisFlag.mjVIS_TENDON, mujoco.mjtVisFlag.mjVIS_ACTUATOR):
            self.ghost_opt.flags[flag] = 0
        self.pert = mujoco.MjvPerturb()
        self.renderer = open_renderer(m, width, height)
        self.gl_renderer = gl_renderer_name()
        if any(s in self.gl_renderer.lower() for s in SOFTWARE_GL):
            # Software OpenGL (Mesa llvmpipe on a machine without a GPU): no multisampling (anti-aliasing: 2-3x
            # the frame time) and coarser spheres and capsules (a muscle path is many): about 2x for the large
            # models, no difference to see at video sizes.
            self.renderer.close()
            m.vis.quality.offsamples = 0
            m.vis.quality.numslices = min(int(m.vis.quality.numslices), 16)
            m.vis.quality.numstacks = min(int(m.vis.quality.numstacks), 8)
            self.renderer = open_renderer(m, width, height)
        self.font = _font(height)

    def _frame_moving_parts(self) -> None:
        """Fixed roots: look at what moves (the geoms of bodies with joints, at the default pose), not at the
        whole model (a bimanual model's legs and floor would leave the arms small)."""
        m, d = self.model, self.data
        if m.nkey > 0:
            mujoco.mj_resetDataKeyframe(m, d, 0)
        mujoco.mj_forward(m, d)
        moving = np.isin(m.geom_bodyid, m.jnt_bodyid) & (m.geom_rbound > 0)
        if not moving.any():
            return
        rb = m.geom_rbound[moving, None]
        lo, hi = (d.geom_xpos[moving] - rb).min(0), (d.geom_xpos[moving] + rb).max(0)
        self.camera.lookat[:] = (lo + hi) / 2
        radius = max(float(np.linalg.norm(hi - lo)) / 2, 0.05)
        self.camera.distance = 1.15 * radius / math.sin(math.radians(m.vis.global_.fovy) / 2)

    def draw(self, qpos: np.ndarray, act: np.ndarray | None = None, ref_qpos: np.ndarray | None = None,
             text: list[str] = ()) -> np.ndarray:
        """(H, W, 3) uint8: the body at ``qpos``, its ghost at ``ref_qpos`` (None: no ghost), ``text``."""
        m, d = self.model, self.data
        d.qpos[:] = qpos
        if act is not None and m.na:
            d.act[:] = act
        mujoco.mj_forward(m, d)  # positions, muscle paths (tendon wraps) and their activation colours
        if self.root_body >= 0:  # follow the root in the ground plane; height and angles stay the model's
            self.camera.lookat[:2] = d.xpos[self.root_body, :2]
        self.renderer.update_scene(d, camera=self.camera, scene_option=self.body_opt)
        scn = self.renderer.scene
        # Shadows and reflections: several extra passes, the bulk of the time in software GL (Mesa llvmpipe).
        scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        if ref_qpos is not None:
            self._add_ghost(scn, ref_qpos)
        frame = self.renderer.render()
        return draw_text(frame, text, self.font) if text else frame

    def _add_ghost(self, scn: mujoco.MjvScene, ref_qpos: np.ndarray) -> None:
        """The reference's moving geoms into the same scene, recoloured translucent (``mjv_addGeoms``)."""
        m, r = self.model, self.ref
        r.qpos[:] = ref_qpos
        mujoco.mj_kinematics(m, r)
        first = scn.ngeom
        mujoco.mjv_addGeoms(m, r, self.ghost_opt, self.pert, int(mujoco.mjtCatBit.mjCAT_DYNAMIC), scn)
        for i in range(first, scn.ngeom):
            g = scn.geoms[i]
            g.rgba[:] = self.ghost_rgba
            g.matid = -1  # no texture: the ghost is one flat colour
            g.transparent = 1
            g.castshadow = 0
            g.pos[:] = g.pos + self.ghost_offset

    def close(self) -> None:
        self.renderer.close()

    def __enter__(self) -> BodyView:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _font(height: int):
    """Pillow's built-in scalable font, sized to the frame (readable from 120 pixels high)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=max(9, round(height / 26)))


def draw_text(frame: np.ndarray, lines: list[str], font=None) -> np.ndarray:
    """``lines`` at the top left of ``frame`` (H, W, 3), white on a dark band so that any scene reads."""
    from PIL import Image, ImageDraw

    font = font or _font(frame.shape[0])
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image, "RGBA")
    pad = max(2, frame.shape[0] // 100)
    step = int(font.size * 1.25)
    width = max(draw.textlength(line, font=font) for line in lines)
    draw.rectangle((0, 0, width + 2 * pad, step * len(lines) + 2 * pad), fill=(0, 0, 0, 150))
    for k, line in enumerate(lines):
        draw.text((pad, pad + k * step), line, font=font, fill=(255, 255, 255, 255))
    return np.asarray(image)


# ---------------------------------------------------------------------------------------------- encoding
class Mp4Writer:
    """H.264 (libx264, yuv420p) mp4 through PyAV. Written into a temp file beside ``path`` and renamed at
    ``close()``: an interrupted or failed video never leaves a half-written file under the name. The folder
    is made and checked when the writer is opened, before anything is played."""

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float, crf: int = 23):
        import av

        from mmimic.motion.motion_file import current_umask

        check_video_args(width, height, fps)
        self.path = check_video_path(path)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".mp4", dir=self.path.parent)
        os.close(fd)
        os.chmod(self._tmp, 0o666 & ~current_umask())
        self.width, self.height, self.frames = width, height, 0
        self.fps = Fraction(fps).limit_denominator(1001)
        try:
            self._container = av.open(self._tmp, mode="w", format="mp4")
            self._stream = self._container.add_stream("libx264", rate=self.fps)
            self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
            self._stream.options = {"crf": str(crf), "preset": "fast"}
        except BaseException:
            Path(self._tmp).unlink(missing_ok=True)
            raise

    def write(self, frame: np.ndarray) -> None:
        """One (H, W, 3) uint8 RGB frame."""
        import av

        if frame.shape != (self.height, self.width, 3):
            raise ValueError(f"video {self.path}: frame of shape {frame.shape}, expected ({self.height}, "
                             f"{self.width}, 3)")
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> Path:
        """Flush the encoder and put the file in place."""
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Drop the unfinished file."""
        try:
            self._container.close()
        except Exception:
            pass
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def video_info(path: str | os.PathLike) -> dict:
    """Decode ``path``: ``frames`` (decoded, not the header's count), ``width``, ``height``, ``codec``, ``fps``."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return {"frames": frames, "width": stream.codec_context.width, "height": stream.codec_context.height,
                "codec": stream.codec_context.name, "fps": float(stream.average_rate or 0)}


def gif_bytes(frames: list[np.ndarray], fps: float) -> bytes:
    """An animated GIF (Pillow) of (H, W, 3) uint8 frames, looping."""
    import io

    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=round(1000.0 / fps), loop=0)
    return buf.getvalue()


def add_tensorboard_video(writer, tag: str, frames: list[np.ndarray], fps: float, step: int) -> None:
    """What ``SummaryWriter.add_video`` writes (an animated GIF image summary, shown in TensorBoard's Images
    tab), encoded with Pillow: ``add_video`` itself needs moviepy and, without it, writes nothing."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    h, w = frames[0].shape[:2]
    image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=gif_bytes(frames, fps))
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)


def safe_name(name: str) -> str:
    """A clip name as a file name (folders and odd characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "clip"


# ---------------------------------------------------------------------------------------------- playing
def frame_stride(control_dt: float, fps: float) -> int:
    """Draw every k-th control step so that the video runs in real time at about ``fps`` frames/s."""
    return max(1, round(1.0 / (control_dt * fps)))


def record_clips(env, act, path: str | os.PathLike | Mp4Writer, clips: list[int] | None = None,
                 width: int = DEFAULT_SIZE[0], height: int = DEFAULT_SIZE[1], fps: float = DEFAULT_FPS,
                 ghost: bool = True, on_frame=None, log=None) -> list[dict]:
    """Play ``clips`` (indices; default all) of a one-world imitation env one after another with
    ``act(td) -> action`` (as ``play_clips``) and write them into one mp4 at ``path`` (or an open
    :class:`Mp4Writer`, left open). A clip of S steps gives ``S // k + 1`` frames (its start, then every
    k-th step, k = :func:`frame_stride`); the video runs in real time at ``control rate / k`` frames/s.
    ``on_frame(frame, clip)`` sees every frame. Returns one dict per clip: ``clip`` (name), ``steps``,
    ``frames``, ``seconds`` (rendering wall time) and the episode's metrics."""
    from mmimic.eval.play import play_clips

    if env.num_envs != 1:
        raise ValueError(f"record_clips plays one clip at a time: the env has {env.num_envs} worlds, expected 1")
    task = env.task
    names = task.library.names
    clips = list(range(len(names))) if clips is None else [int(c) for c in clips]
    bad = [c for c in clips if not 0 <= c < len(names)]
    if bad or not clips:
        raise ValueError(f"clips {bad or clips}: expected indices from 0 to {len(names) - 1} (the motions' clips)")
    stride = frame_stride(task.dt, fps)
    rate = 1.0 / (task.dt * stride)
    check_video_args(width, height, rate)
    own = not isinstance(path, Mp4Writer)
    writer = Mp4Writer(path, width, height, rate) if own else path
    view = None
    done: list[dict] = []
    state = {}

    def on_step(chunk, s, playing, step):
        if not bool(playing[0]):
            return
        clip = chunk[0][0]
        if step == 0:
            state.update(clip=clip, steps=0, frames=0, site_sq=0.0, joint_sq=0.0, t0=time.perf_counter())
        else:
            state["steps"] = step
        site = float(s.site_rel[0].square().sum(-1).mean())  # this step's errors: one host copy, recording only
        joint = float(s.dq[0].square().mean()) if s.dq.shape[-1] else 0.0
        if step > 0:  # the start is on the reference by construction; the metrics count steps 1..S
            state["site_sq"] += site
            state["joint_sq"] += joint
        if step % stride:
            return
        n = max(step, 1)
        duration = float(task.library.duration[clip])
        text = [f"{names[clip]}  {step * task.dt:5.2f} / {duration:.2f} s",
                f"site {1000 * math.sqrt(site):6.1f} mm  (rmse {1000 * math.sqrt(state['site_sq'] / n):.1f})",
                f"joint {math.sqrt(joint):.3f} rad  (rmse {math.sqrt(state['joint_sq'] / n):.3f})",
                "green ghost: reference" if ghost else "reference hidden"]
        sim = env.sim
        frame = view.draw(sim.qpos[0].detach().cpu().double().numpy(), sim.act[0].detach().cpu().double().numpy(),
                          s.ref["qpos"][0].detach().cpu().double().numpy() if ghost else None, text)
        writer.write(frame)
        state["frames"] += 1
        if on_frame is not None:
            on_frame(frame, clip)

    try:
        view = BodyView(env.sim.mjm, width, height)
        for clip in clips:
            episode = play_clips(env, act, clips=[clip], on_step=on_step)[0]
            seconds = time.perf_counter() - state["t0"]
            row = {"clip": names[clip], "steps": state["steps"], "frames": state["frames"],
                   "seconds": seconds, **{k: v for k, v in episode.items() if k not in ("clip", "episode")}}
            done.append(row)
            if log is not None:
                log(f"  {names[clip]}: {row['steps']} steps, {row['frames']} frames in {seconds:.1f} s "
                    f"({row['frames'] / max(seconds, 1e-9):.1f} frames/s), site rel {row['site_rel_error_m']:.4f} m")
    except BaseException:
        if own:
            writer.abort()
        raise
    finally:
        if view is not None:
            view.close()
    if own:
        writer.close()
    return done


def record_worst(result: dict, where: str | os.PathLike, motions: str | os.PathLike, out_dir: str | os.PathLike,
                 count: int, width: int = DEFAULT_SIZE[0], height: int = DEFAULT_SIZE[1], fps: float = DEFAULT_FPS,
                 stochastic: bool = False, backend: str | None = None, device: str = "cpu",
                 max_site_error: float | None = None, log=None) -> list[dict]:
    """Videos of the ``count`` clips of an evaluation ``result`` with the largest ``site_rel_error_m``, one
    mp4 each in ``OUT/videos/<clip>.mp4``, played again (same rules) in a one-world env. Returns the list
    that ``metrics.json`` keeps under ``videos`` (paths relative to ``out_dir``)."""
    from mmimic.eval.play import DEFAULT_MAX_SITE_ERROR, eval_env, load_run, policy

    folder = Path(out_dir) / "videos"
    clips = result["clips"]
    worst = sorted(clips, key=lambda name: -clips[name]["site_rel_error_m"])[:int(count)]
    cfg, state, path = load_run(where, device)
    rule = result.get("max_site_error", DEFAULT_MAX_SITE_ERROR) if max_site_error is None else max_site_error
    env = eval_env(cfg, motions, device, backend, rule, num_envs=1)
    act = policy(cfg, state, path, env, stochastic)
    names, used, videos = env.task.library.names, set(), []
    for name in worst:
        stem = safe_name(name)
        while stem in used:
            stem += "_"
        used.add(stem)
        if log is not None:
            log(f"video of {name} (site rel {clips[name]['site_rel_error_m']:.4f} m) -> {folder / stem}.mp4")
        row = record_clips(env, act, folder / f"{stem}.mp4", clips=[names.index(name)], width=width, height=height,
                           fps=fps, log=log)[0]
        videos.append({"clip": name, "path": f"videos/{stem}.mp4", "frames": row["frames"], "steps": row["steps"],
                       "site_rel_error_m": clips[name]["site_rel_error_m"]})
    return videos


__all__ = ["BodyView", "DEFAULT_FPS", "DEFAULT_SIZE", "GHOST_RGBA", "GL_BACKENDS", "Mp4Writer", "add_tensorboard_video",
           "check_gl", "check_video_args", "check_video_path", "draw_text", "frame_stride", "gif_bytes", "gl_error",
           "gl_renderer_name", "open_renderer", "probe_gl", "record_clips", "record_worst", "safe_name", "video_info"]
