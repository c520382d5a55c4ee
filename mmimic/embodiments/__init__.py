"""Embodiments: muscle models by name (``load_embodiment("bimanual", remove_fingers=True)``)."""

from mmimic.embodiments.config import EmbodimentConfig
from mmimic.embodiments.registry import (
    EMBODIMENTS,
    Embodiment,
    EmbodimentInfo,
    embodiment_info,
    known_embodiments,
    load_embodiment,
    register,
)

__all__ = [
    "EMBODIMENTS",
    "Embodiment",
    "EmbodimentConfig",
    "EmbodimentInfo",
    "embodiment_info",
    "known_embodiments",
    "load_embodiment",
    "register",
]
