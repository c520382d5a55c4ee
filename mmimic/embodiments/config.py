"""Options for building an embodiment: which model, what to strip, how to simulate it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EmbodimentConfig:
    """How to build one muscle model. ``None`` keeps the model's (or embodiment's) own value."""

    name: str = "arm26"  # embodiment name (set from env.model)
    remove_fingers: bool = False  # weld finger joints and drop the muscles that cross them
    mimic_sites: bool = True  # add the SMPL map's mimic sites (smpl_maps/<name>.json), if it has one
    timestep: float | None = None  # physics step (s); None: the XML's
    substeps: int | None = None  # physics steps per control step; None: the embodiment default
    solver_iterations: int | None = None  # constraint solver iterations (XML: 100)
    ls_iterations: int | None = None  # line-search iterations (XML: 50)
    nconmax: int | None = None  # contacts allocated per world; None: sized from the model
    njmax: int | None = None  # constraint rows allocated per world; None: sized from the model
