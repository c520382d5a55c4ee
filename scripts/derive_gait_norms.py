#!/usr/bin/env python3
"""Derive the normative gait tables in ``mmimic/eval/norms/`` from the raw public data in
``../shared/data/gait/`` (see its README for origin, licences and file formats).

    python scripts/derive_gait_norms.py [--data ../shared/data/gait] [--out mmimic/eval/norms] [--check]

Writes two CSV tables of 101 points over the gait cycle (0 = heel strike, 100 = the same foot's next
heel strike), each with its attribution in ``#`` header lines:

- ``gait_kinematics.csv``: hip flexion, knee flexion and ankle dorsiflexion (degrees), mean and SD over
  the 42 adults of Fukuchi et al. 2018 (overground walking, comfortable speed), right and left sides
  pooled as 84 curves (each side is normalised to its own cycle in the data; CC BY 4.0).
- ``emg_envelopes.csv``: EMG envelopes normalised to their peak over the cycle (each trial to its own
  peak, then mean and SD over trials), right leg. Ten muscles from Falisse et al. 2019 (one subject,
  6-11 trials; MIT); gluteus maximus, which that set lacks, from the OpenSim Moco example3DWalking trial
  (Rajagopal et al. 2016; one right cycle, 0.2670-1.4115 s, the heel strikes its README gives; SD 0;
  Apache-2.0).

``--check`` compares with the committed tables instead of writing (exit 1 on a difference). The package
reads only the tables at run time, never ``../shared``. Needs numpy and scipy (for the MATLAB file).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
POINTS = np.linspace(0.0, 100.0, 101)

# Fukuchi columns: the Z component is the sagittal plane (+ = flexion / dorsiflexion), per the data README.
KINEMATICS = {"hip_flexion": "HipAngleZ", "knee_flexion": "KneeAngleZ", "ankle_dorsiflexion": "AnkleAngleZ"}
# our channel name -> Falisse 2019 EMG column
FALISSE_EMG = {
    "soleus": "Soleus", "gastrocnemius_medialis": "Gastrocnemius-medialis",
    "gastrocnemius_lateralis": "Gastrocnemius-lateralis", "tibialis_anterior": "Tibialis-anterior",
    "vastus_lateralis": "Vastus-lateralis", "vastus_medialis": "Vastus-medialis", "rectus_femoris": "Rectus-femoris",
    "biceps_femoris": "Hamstrings-lateralis", "medial_hamstrings": "Hamstrings-medialis",
    "gluteus_medius": "Gluteus-medialis",
}
MOCO_EMG = {"gluteus_maximus": "gluteus_maximus"}
MOCO_RIGHT_CYCLE_S = (0.2670, 1.4115)  # right heel strikes in grf_walk.mot (the data README)

FUKUCHI_CREDIT = """\
Data: Fukuchi CA, Fukuchi RK, Duarte M (2018) "A public data set of overground and treadmill walking
kinematics and kinetics in healthy individuals", PeerJ 6:e4640, https://doi.org/10.7717/peerj.4640;
data files https://doi.org/10.6084/m9.figshare.5722711, licensed CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/). Changed: this table is derived by mmimic
(scripts/derive_gait_norms.py): mean and SD (ddof 1) of the {n} curves (subjects {subjects}, right and
left sides pooled) of the files WBDS<NN>walkOCang.txt, columns {{R,L}}HipAngleZ, KneeAngleZ, AnkleAngleZ."""
FALISSE_CREDIT = """\
Data: Falisse A, Serrancoli G, Dembia CL, Gillis J, Jonkers I, De Groote F (2019) J. R. Soc. Interface
16: 20190402, doi:10.1098/rsif.2019.0402; file ExperimentalData.mat of github.com/antoinefalisse/3dpredictsim,
MIT License, Copyright (c) 2019 antoinefalisse (permission notice: THE SOFTWARE IS PROVIDED "AS IS",
WITHOUT WARRANTY OF ANY KIND; full text in that repository's LICENSE). Changed: derived by mmimic
(scripts/derive_gait_norms.py): EMG.subject1.all, each trial normalised to its peak, mean and SD (ddof 1)
over the recorded trials, resampled from 100 to 101 points."""
MOCO_CREDIT = """\
gluteus_maximus: OpenSim Moco example3DWalking, electromyography.sto (github.com/opensim-org/opensim-core,
Apache License 2.0, Copyright (c) 2005-2017 Stanford University and the Authors; data from Rajagopal A et
al. (2016) IEEE Trans Biomed Eng 63(10):2068-2079). Changed: derived by mmimic: the right cycle
0.2670-1.4115 s, resampled to 101 points, normalised to its peak; one trial, so SD 0."""


def fukuchi_kinematics(folder: Path) -> tuple[dict[str, np.ndarray], str]:
    """{joint: (84, 101) curves in degrees} and the credit text."""
    files = sorted(folder.glob("WBDS*walkOCang.txt"))
    if not files:
        raise SystemExit(f"{folder}: no WBDS<NN>walkOCang.txt files")
    curves = {k: [] for k in KINEMATICS}
    for f in files:
        header = f.read_text().splitlines()[0].split("\t")
        table = np.loadtxt(f, skiprows=1)
        if table.shape != (101, len(header)) or not np.allclose(table[:, 0], POINTS):
            raise SystemExit(f"{f}: expected 101 rows at 0..100 % with {len(header)} columns, got {table.shape}")
        for joint, col in KINEMATICS.items():
            for side in "RL":
                curves[joint].append(table[:, header.index(side + col)])
    subjects = [f.name[4:6] for f in files]
    credit = FUKUCHI_CREDIT.format(n=2 * len(files), subjects=f"{subjects[0]}-{subjects[-1]} ({len(files)})")
    return {k: np.asarray(v) for k, v in curves.items()}, credit


def falisse_emg(mat: Path) -> dict[str, np.ndarray]:
    """{channel: (trials, 101)} peak-normalised envelopes (trials with no recording dropped)."""
    from scipy.io import loadmat

    emg = loadmat(mat, squeeze_me=True, struct_as_record=False)["ExperimentalData"].EMG.subject1
    heads = [str(h) for h in emg.colheaders]
    data = np.asarray(emg.all, dtype=np.float64)  # (100 samples, 14 channels, 11 trials)
    src = np.linspace(0.0, 100.0, data.shape[0])  # the 100 samples span 0-100 % (data README)
    out = {}
    for name, col in FALISSE_EMG.items():
        trials = data[:, heads.index(col), :].T
        trials = trials[~np.isnan(trials).any(axis=1)]
        trials = np.stack([np.interp(POINTS, src, t) for t in trials])
        out[name] = trials / trials.max(axis=1, keepdims=True)
    return out


def read_sto(path: Path) -> tuple[list[str], np.ndarray]:
    """An OpenSim storage file: (column names, rows)."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "endheader") + 1
    return lines[start].split("\t"), np.loadtxt(io.StringIO("\n".join(lines[start + 1:])))


def moco_emg(sto: Path) -> dict[str, np.ndarray]:
    """{channel: (1, 101)}: the right gait cycle of the Moco example, peak-normalised."""
    heads, rows = read_sto(sto)
    t0, t1 = MOCO_RIGHT_CYCLE_S
    at = t0 + (t1 - t0) * POINTS / 100.0
    out = {}
    for name, col in MOCO_EMG.items():
        curve = np.interp(at, rows[:, 0], rows[:, heads.index(col)])
        out[name] = (curve / curve.max())[None]
    return out


def _csv(comment: str, columns: dict[str, np.ndarray]) -> str:
    lines = ["# " + line if line else "#" for line in comment.splitlines()]
    lines.append(",".join(["percent_cycle", *columns]))
    for i, pct in enumerate(POINTS):
        lines.append(",".join([f"{pct:g}", *(f"{v[i]:.4f}" for v in columns.values())]))
    return "\n".join(lines) + "\n"


def tables(data: Path) -> dict[str, str]:
    """File name -> text of each derived table."""
    kin, credit = fukuchi_kinematics(data / "fukuchi2018")
    cols = {}
    for joint, curves in kin.items():
        cols[f"{joint}_mean"], cols[f"{joint}_sd"] = curves.mean(axis=0), curves.std(axis=0, ddof=1)
    kin_text = _csv("Normative sagittal joint angles over the gait cycle (degrees; + = flexion / dorsiflexion;\n"
                    "0 and 100 = heel strikes of the same foot), generated by scripts/derive_gait_norms.py.\n"
                    + credit, cols)
    emg = {**falisse_emg(data / "3dpredictsim" / "ExperimentalData.mat"),
           **moco_emg(data / "opensim_moco_example3DWalking" / "electromyography.sto")}
    cols, counts = {}, []
    for name, trials in emg.items():
        cols[f"{name}_mean"] = trials.mean(axis=0)
        cols[f"{name}_sd"] = trials.std(axis=0, ddof=1) if len(trials) > 1 else np.zeros(len(POINTS))
        counts.append(f"{name} {len(trials)}")
    emg_text = _csv("Normative EMG envelopes over the gait cycle (right leg; each trial normalised to its peak;\n"
                    "0 and 100 = right heel strikes), generated by scripts/derive_gait_norms.py.\n"
                    f"Trials per muscle: {', '.join(counts)}.\n" + FALISSE_CREDIT + "\n" + MOCO_CREDIT, cols)
    return {"gait_kinematics.csv": kin_text, "emg_envelopes.csv": emg_text}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "gait",
                    help="the raw data folder (default: ../shared/data/gait)")
    ap.add_argument("--out", type=Path, default=REPO / "mmimic" / "eval" / "norms", help="where the tables go")
    ap.add_argument("--check", action="store_true", help="compare with the tables in --out instead of writing")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"error: {args.data}: no such folder (the raw gait data; see --data)", file=sys.stderr)
        return 2
    stale = []
    for name, text in tables(args.data).items():
        path = args.out / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("out of date (rerun scripts/derive_gait_norms.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
