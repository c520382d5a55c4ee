"""Experiment configs: a structured dataclass schema, merged with a YAML file and key=value overrides."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def load_config(schema: type, path: str | None = None, overrides: list[str] | tuple[str, ...] = ()):
    """Defaults of ``schema``, then the YAML at ``path``, then dotted ``key=value`` overrides.

    Unknown keys and wrong types fail with omegaconf's message, which names the key.
    """
    cfg = OmegaConf.structured(schema)
    if path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such experiment config")
        cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ValueError(f"overrides must be key=value, got {bad}")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    return OmegaConf.to_object(cfg)


def to_yaml(cfg) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
