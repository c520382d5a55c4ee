"""A training run's learning curves, as recorded evidence: JSON (the curves, the command, the config,
device and versions) and a PNG (rel-site error, joint error, episode length, early-termination rate
against env steps), read back from the run's own TensorBoard events.

``mmimic curve RUN_DIR --out benchmarks/results/learning-bimanual-cpu`` writes both.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from mmimic.bench.throughput import versions, write_json

# TensorBoard tag -> (JSON key, panel title, unit)
CURVES = {
    "tracking_errors/site_rel": ("site_rel_error_m", "relative site error", "m"),
    "tracking_errors/joint_pos": ("joint_pos_error_rad", "joint error (mean |dq|)", "rad"),
    "episode/episode_length": ("episode_length", "episode length", "control steps"),
    "episode/terminated_fraction": ("early_termination_rate", "early-termination rate", "of ended episodes"),
}
EXTRA = {"speed/train_steps_per_s": "train_steps_per_s", "reward/mean": "reward_mean",
         "sim/unstable_worlds_total": "unstable_worlds_total"}


def read_curves(run_dir: str | Path) -> dict:
    """{json key: {"env_steps": [...], "value": [...], "wall_s": [...]}} from the run's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = Path(run_dir)
    if not any(run_dir.glob("events.out.tfevents.*")):
        raise FileNotFoundError(f"{run_dir}: no TensorBoard event files (is it a run folder of `mmimic train`?)")
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    out, t0 = {}, None
    for tag, key in [*((t, k[0]) for t, k in CURVES.items()), *EXTRA.items()]:
        if tag not in tags:
            continue
        scalars = events.Scalars(tag)
        t0 = min(t0 or scalars[0].wall_time, scalars[0].wall_time)
        out[key] = {"env_steps": [int(e.step) for e in scalars], "value": [float(e.value) for e in scalars],
                    "wall_time": [float(e.wall_time) for e in scalars]}
    for curve in out.values():  # wall seconds since the first event of the run
        curve["wall_s"] = [round(w - t0, 1) for w in curve.pop("wall_time")]
    return out


def summarize(curves: dict, window: int = 10) -> dict:
    """Start and end (means over the first/last ``window`` points) of each curve, and their ratio."""
    out = {}
    for key, c in curves.items():
        v = [x for x in c["value"] if x == x]  # drop NaN (no episode ended in that interval)
        if not v:
            continue
        start, end = sum(v[:window]) / len(v[:window]), sum(v[-window:]) / len(v[-window:])
        out[key] = {"start": start, "end": end, "end_over_start": end / start if start else None}
    last = curves.get("site_rel_error_m") or next(iter(curves.values()))
    out["env_steps"] = last["env_steps"][-1]
    out["wall_minutes"] = round(last["wall_s"][-1] / 60.0, 1)
    return out


def plot_curves(curves: dict, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (key, name, unit) in zip(axes.flat, CURVES.values()):
        c = curves.get(key)
        if c:
            ax.plot([s / 1e6 for s in c["env_steps"]], c["value"], lw=1.2)
        ax.set_title(name)
        ax.set_xlabel("env steps (millions)")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def record_learning(run_dir: str | Path, out_stem: str | Path, command: str = "", note: str = "") -> dict:
    """Write ``OUT_STEM.json`` and ``OUT_STEM.png`` for a run; returns the JSON dict."""
    run_dir, out_stem = Path(run_dir), Path(out_stem)
    curves = read_curves(run_dir)
    if "site_rel_error_m" not in curves:
        raise ValueError(f"{run_dir}: no tracking_errors/site_rel curve (not an imitation training run?)")
    config = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
    summary = summarize(curves)
    result = {"kind": "learning", "run_dir": str(run_dir), "command": command, "note": note,
              "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "versions": versions(), "summary": summary, "config_yaml": config, "curves": curves}
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    write_json(result, out_stem.with_suffix(".json"))
    site = summary["site_rel_error_m"]
    title = (f"{run_dir.name}: {summary['env_steps']:,} env steps in {summary['wall_minutes']} min; rel-site error "
             f"{site['start']:.4f} -> {site['end']:.4f} m")
    plot_curves(curves, out_stem.with_suffix(".png"), title)
    return result
