"""mmimic: muscle-driven humanoid motion imitation on MuJoCo Warp.

Stages of the data path, one folder each (see README): ``embodiments`` (muscle models by name),
``sim`` (batched mujoco_warp with torch views), ``envs`` (TorchRL environments), ``bench``.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# Videos render headless: MuJoCo picks its OpenGL backend from MUJOCO_GL when it is first imported, and
# its default on Linux (glfw) needs a display. Unless the user chose one (or mujoco is already imported),
# use EGL, or the platform PyOpenGL was told to use. See mmimic.eval.video for the error when none works.
if _sys.platform.startswith("linux") and "MUJOCO_GL" not in _os.environ and "mujoco" not in _sys.modules:
    _platform = _os.environ.get("PYOPENGL_PLATFORM", "").strip().lower()
    _os.environ["MUJOCO_GL"] = _platform if _platform in ("egl", "osmesa") else "egl"
