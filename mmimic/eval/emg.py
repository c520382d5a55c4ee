"""Muscle activations of a walking rollout against human EMG envelopes over the gait cycle.

Each measured channel maps to the model muscles that lie under its electrode (``CHANNELS``; several
heads averaged). Per side, the channel's activation is cut into the same stride cycles as the gait
kinematics (``mmimic.eval.gait``), both sides' cycles are pooled, and the mean envelope is normalised to
its peak, as the EMG is (``norms/emg_envelopes.csv``: Falisse et al. 2019 and, for gluteus maximus, the
OpenSim Moco walking example). Reported per channel: Pearson r of the envelopes, and on/off timing
agreement: the share of the cycle where both are on, or both off, "on" meaning above ``ON_LEVEL`` of the
peak.

Kinematic imitation does not have to produce physiological activations (many muscle patterns give the
same motion): this reports how close they are; nothing is tuned to it.
"""

from __future__ import annotations

import numpy as np

from mmimic.eval.gait import POINTS, SIDES, Strides, cut_cycles, load_norms, pearson_r
from mmimic.motion.motion_file import atomic_write

# channel -> model muscles (without the side suffix) whose mean activation stands for it
CHANNELS = {
    "soleus": ("soleus",),
    "gastrocnemius_medialis": ("gasmed",),
    "gastrocnemius_lateralis": ("gaslat",),
    "tibialis_anterior": ("tibant",),
    "vastus_lateralis": ("vaslat",),
    "vastus_medialis": ("vasmed",),
    "rectus_femoris": ("recfem",),
    "biceps_femoris": ("bflh",),
    "medial_hamstrings": ("semimem", "semiten"),
    "gluteus_maximus": ("glmax1", "glmax2", "glmax3"),
    "gluteus_medius": ("glmed1", "glmed2", "glmed3"),
}
ON_LEVEL = 0.3  # a muscle is "on" above 30 % of its peak envelope
SOURCES = {"gluteus_maximus": "OpenSim Moco example3DWalking (Rajagopal et al. 2016), 1 trial"}
DEFAULT_SOURCE = "Falisse et al. 2019, 1 subject, 6-11 trials"


def emg_norms() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{channel: (mean, sd)} peak-normalised envelopes over 101 points."""
    table = load_norms("emg_envelopes.csv")
    return {c: (table[f"{c}_mean"], table[f"{c}_sd"]) for c in CHANNELS}


def on_off_agreement(a: np.ndarray, b: np.ndarray, level: float = ON_LEVEL) -> float:
    """Share of the points where two peak-normalised envelopes are both on or both off."""
    on = lambda x: np.asarray(x) / max(float(np.max(x)), 1e-12) > level  # noqa: E731
    return float(np.mean(on(a) == on(b)))


def analyze_emg(strides: Strides) -> dict:
    """Per channel: the model's mean envelope (peak-normalised), r and on/off agreement against the EMG.
    Uses the trials of ``strides`` that are rollouts (have activations); an error if none is."""
    rollouts = [i for i, t in enumerate(strides.trials) if t.act is not None]
    if not rollouts:
        raise ValueError("EMG comparison needs rollouts (motion files with muscle activations 'act', written by "
                         "mmimic eval for walking clips); these are retargeted motions")
    muscles = strides.trials[rollouts[0]].muscle_names
    norms = emg_norms()
    channels, missing = {}, []
    for channel, heads in CHANNELS.items():
        cycles = []
        for side, s in SIDES.items():
            names = [f"{h}_{s}" for h in heads]
            if not all(n in muscles for n in names):
                continue
            cols = [muscles.index(n) for n in names]
            for i in rollouts:
                trial = strides.trials[i]
                cyc, _ = cut_cycles(trial.act[:, cols].mean(axis=1, keepdims=True), strides.strikes[i][side],
                                    trial.fps)
                cycles.append(cyc[strides.kept_of(i, side), :, 0])
        cycles = [c for c in cycles if len(c)]
        if not cycles:
            missing.append(channel)
            continue
        curve = np.concatenate(cycles).mean(axis=0)
        peak = max(float(curve.max()), 1e-12)
        ref = norms[channel][0]
        channels[channel] = {
            "r": pearson_r(curve, ref), "on_off_agreement": on_off_agreement(curve, ref),
            "peak_activation": peak, "cycles": int(sum(len(c) for c in cycles)),
            "model_muscles": [f"{h}_{{r,l}}" for h in heads], "reference": SOURCES.get(channel, DEFAULT_SOURCE),
            "envelope": (curve / peak).round(4).tolist(),
        }
    if not channels:
        raise ValueError(f"the model has none of the muscles the EMG channels map to ({', '.join(CHANNELS)})")
    rs = [c["r"] for c in channels.values() if np.isfinite(c["r"])]
    return {"mean_r": float(np.mean(rs)) if rs else float("nan"),
            "mean_on_off_agreement": float(np.mean([c["on_off_agreement"] for c in channels.values()])),
            "on_level": ON_LEVEL, "muscles": channels, "missing": missing,
            "rollouts": [strides.trials[i].path for i in rollouts], "percent_cycle": POINTS.tolist(),
            "note": "kinematic imitation need not give physiological activations; reported, not tuned to"}


def plot_emg(result: dict, path) -> object:
    """One panel per muscle: the model's envelope over the EMG mean +- 1 SD band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norms = emg_norms()
    names = list(result["muscles"])
    cols = 4
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        mean, sd = norms[name]
        info = result["muscles"][name]
        ax.fill_between(POINTS, np.clip(mean - sd, 0, None), mean + sd, color="0.8")
        ax.plot(POINTS, mean, color="0.4", lw=1.2, label="EMG")
        ax.plot(POINTS, info["envelope"], color="tab:red", lw=1.6, label="model activation")
        ax.set_title(f"{name.replace('_', ' ')}\nr = {info['r']:.2f}, on/off {info['on_off_agreement']:.0%}",
                     fontsize=9)
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 1.3)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"muscle activation vs EMG (peak-normalised): mean r = {result['mean_r']:.2f}", fontsize=10)
    fig.tight_layout()
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))


__all__ = ["CHANNELS", "ON_LEVEL", "analyze_emg", "emg_norms", "on_off_agreement", "plot_emg"]
