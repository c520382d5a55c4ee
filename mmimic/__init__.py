"""mmimic: muscle-driven humanoid motion imitation on MuJoCo Warp.

Stages of the data path, one folder each (see README): ``embodiments`` (muscle models by name),
``sim`` (batched mujoco_warp with torch views), ``envs`` (TorchRL environments), ``bench``.
"""

__version__ = "0.1.0"
