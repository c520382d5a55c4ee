"""Motion data, in data-path order: AMASS/SMPL input (``smpl``), synthetic AMASS-format demo clips
(``synth``), retargeting onto a muscle model (``retarget``, ``batch``), the motion file format
(``motion_file``) and the on-device motion library (``library``)."""

from mmimic.motion.library import MotionLibrary
from mmimic.motion.motion_file import MotionClip, MotionFileError, load_motion, save_motion
from mmimic.motion.smpl import load_amass, smpl_joints

__all__ = ["MotionClip", "MotionFileError", "MotionLibrary", "load_amass", "load_motion", "save_motion", "smpl_joints"]
