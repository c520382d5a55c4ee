"""The bundled demo motions: synthesized AMASS-format clips, retargeted once per model at first use.

Nothing is shipped or downloaded: ``ensure_demo_library`` writes the clips with ``synth`` and
retargets them into ``DATA/motions/<model>`` (resumable, so a second call costs nothing).
"""

from __future__ import annotations

from pathlib import Path

from mmimic.motion.batch import retarget_dir
from mmimic.motion.synth import KINDS, ensure_demo_motions

# The planar arm can only follow motion in its plane: reaching, not waving or walking.
DEMO_KINDS = {"arm26": ("reach",)}
DEMO_COUNT = 3


def ensure_demo_library(model: str, data_dir: str | Path = "data", jobs: int = 2, log=print,
                        remove_fingers: bool = False) -> Path:
    """Return ``DATA/motions/<model>`` (``<model>-nofingers`` for the model with welded fingers, whose
    joints differ), synthesizing and retargeting the demo clips if missing."""
    kinds = DEMO_KINDS.get(model, KINDS)
    synth_dir = Path(data_dir) / "synth" / "-".join(kinds) if model in DEMO_KINDS else Path(data_dir) / "synth" / "all"
    out = Path(data_dir) / "motions" / (f"{model}-nofingers" if remove_fingers else model)
    wanted = [synth_dir / f"{kind}_{k}.npz" for kind in kinds for k in range(DEMO_COUNT)]
    if not all(p.is_file() for p in wanted):  # also completes a set whose writing was interrupted
        log(f"demo motions: synthesizing {', '.join(kinds)} x {DEMO_COUNT} into {synth_dir}")
        ensure_demo_motions(synth_dir, DEMO_COUNT, kinds)
    if len(list(out.glob("*.npz"))) < len(list(synth_dir.glob("*.npz"))):
        log(f"demo motions: retargeting onto {model} into {out} (once)")
        summary = retarget_dir(synth_dir, model, out, jobs=jobs, remove_fingers=remove_fingers)
        if summary["aggregate"]["errors"]:
            raise RuntimeError(f"demo motions: {summary['aggregate']['errors']} clip(s) failed; see {out}/summary.json")
    return out
