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
SPLITS = ("train", "test")
TEST_FIRST_SEED = 100  # the held-out clips: other seeds, so other amplitudes, speeds and phases


def ensure_demo_library(model: str, data_dir: str | Path = "data", jobs: int = 2, log=print,
                        remove_fingers: bool = False, split: str = "train") -> Path:
    """Return ``DATA/motions/<model>`` (``<model>-nofingers`` for the model with welded fingers, whose
    joints differ; ``...-test`` for the held-out ``split="test"``), synthesizing and retargeting the demo
    clips if missing. The test clips are the same kinds with seeds from ``TEST_FIRST_SEED``: never trained on."""
    if split not in SPLITS:
        raise ValueError(f"demo motions: split must be one of {SPLITS}, got {split!r}")
    kinds = DEMO_KINDS.get(model, KINDS)
    suffix = "" if split == "train" else f"-{split}"
    synth_dir = Path(data_dir) / "synth" / (("-".join(kinds) if model in DEMO_KINDS else "all") + suffix)
    out = Path(data_dir) / "motions" / ((f"{model}-nofingers" if remove_fingers else model) + suffix)
    first = 0 if split == "train" else TEST_FIRST_SEED
    wanted = [synth_dir / f"{kind}_{k}.npz" for kind in kinds for k in range(first, first + DEMO_COUNT)]
    if not all(p.is_file() for p in wanted):  # also completes a set whose writing was interrupted
        log(f"demo motions ({split}): synthesizing {', '.join(kinds)} x {DEMO_COUNT} into {synth_dir}")
        ensure_demo_motions(synth_dir, DEMO_COUNT, kinds, first_seed=first)
    if len(list(out.glob("*.npz"))) < len(list(synth_dir.glob("*.npz"))):
        log(f"demo motions ({split}): retargeting onto {model} into {out} (once)")
        summary = retarget_dir(synth_dir, model, out, jobs=jobs, remove_fingers=remove_fingers)
        if summary["aggregate"]["errors"]:
            raise RuntimeError(f"demo motions: {summary['aggregate']['errors']} clip(s) failed; see {out}/summary.json")
    return out
