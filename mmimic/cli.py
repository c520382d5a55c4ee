"""The ``mmimic`` command: one subcommand per job (``bench``, ``posture``, ``motion``, ``retarget``, ``train``,
``eval``, ``play``, ``gait``, ``curve``, ``doctor``)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path


def _device(value: str) -> str:
    from mmimic.sim import resolve_device

    try:
        return resolve_device(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int_list(value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"world counts must be >= 1, got {value!r}")
    return out


def _names_from(known, what: str):
    """A parser of comma-separated names that must all be in ``known``."""
    def parse(value: str) -> list[str]:
        out = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [k for k in out if k not in known]
        if not out or unknown:
            raise argparse.ArgumentTypeError(f"unknown {what}(s) {', '.join(unknown) or repr(value)}; "
                                             f"known: {', '.join(known)}")
        return out
    return parse


def _backends(value: str) -> list[str]:
    from mmimic.sim import BACKENDS

    return _names_from(BACKENDS, "backend")(value)


def _backend(value: str) -> str:
    out = _backends(value)
    if len(out) != 1:
        raise argparse.ArgumentTypeError(f"one backend here, got {value!r}")
    return out[0]


def _check_backends(backends: list[str], device: str, command: str) -> None:
    """Fail with one line (not a traceback) when a backend cannot run on the device."""
    from mmimic.sim import resolve_backend

    for b in backends:
        try:
            resolve_backend(b, device)
        except ValueError as exc:
            raise SystemExit(f"mmimic {command}: {exc}") from None


def _model(value: str) -> str:
    from mmimic.embodiments import known_embodiments

    if value not in known_embodiments():
        raise argparse.ArgumentTypeError(f"unknown model {value!r}; known: {', '.join(known_embodiments())}")
    return value


def _models(value: str) -> list[str]:
    from mmimic.embodiments import known_embodiments

    return _names_from(known_embodiments(), "model")(value)


def _checked(command: str, check, value):
    """``check(value)`` for a value from a config file (argparse never saw it), or exit with one line."""
    try:
        return check(value)
    except argparse.ArgumentTypeError as exc:
        raise SystemExit(f"mmimic {command}: {exc}") from None


def _quiet_warp(verbose: bool) -> None:
    import warp as wp

    # warp logs a line per loaded kernel module (hundreds for a muscle model) unless told not to
    wp.config.quiet = not verbose
    wp.config.log_level = wp.LOG_INFO if verbose else wp.LOG_WARNING


def _write_result(args: argparse.Namespace, result: dict, stem: str) -> None:
    """--out PATH, '-' for none, default benchmarks/results/<stem>-<device>.json."""
    from mmimic.bench import write_json

    if args.out == "-":
        return
    out = Path(args.out) if args.out else Path("benchmarks/results") / f"{stem}-{args.device.replace(':', '')}.json"
    write_json(result, out)
    print(f"wrote {out}")


def cmd_bench_train(args: argparse.Namespace) -> int:
    from mmimic.bench import format_train_table, run_train_bench

    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _bench_train_scaling(args)
    ranked = "WORLD_SIZE" in os.environ

    sweep = args.num_envs or ([4096] if args.device.startswith("cuda") else [64])
    iterations = args.steps or (20 if args.device.startswith("cuda") else 3)
    warmup = args.warmup if args.warmup is not None else 1
    if not ranked or os.environ.get("RANK") == "0":
        print(f"mmimic bench --train: {args.model} on {args.device} ({', '.join(args.backend)}), envs {sweep}, "
              f"{iterations} timed iterations after {warmup} warm-up (demo motions are made at first use)"
              f"{' in ' + os.environ['WORLD_SIZE'] + ' processes' if ranked else ''}", flush=True)
    overrides = list(args.overrides) + (["env.embodiment.remove_fingers=true"] if args.no_fingers else [])
    overrides += [f"env.sim_threads={args.threads}"] if args.threads else []
    quiet = ranked and os.environ.get("RANK") != "0"
    dist = None
    if ranked:
        from mmimic.rl.distributed import Dist

        dist = Dist.from_environment(args.device)
    result = run_train_bench(args.model, args.device, sweep, iterations, warmup, command=args.command_line, dist=dist,
                             progress=None if quiet else (lambda msg: print(f"  ... {msg}", flush=True)),
                             backends=args.backend,
                             config=args.config, overrides=overrides)
    args.result = result
    if ranked and os.environ.get("RANK") != "0":
        return 0  # rank 0 reports
    print(format_train_table(result))
    _write_result(args, result, f"bench-train-{args.model}{'-nofingers' if args.no_fingers else ''}")
    print(f"train/env: {min(r['train_over_env'] for r in result['rows']):.3f} (goal >= 0.8)")
    return 0


def _bench_train_scaling(args: argparse.Namespace) -> int:
    """``mmimic bench --train --nproc N``: the training loop in 1 process, then in N (torchrun) on the same
    total envs; records steps/s of both and the scaling (N-process / 1-process steps/s) per env count."""
    import json
    import tempfile

    from mmimic.bench import write_json

    n = args.nproc
    sweep = args.num_envs or ([4096] if args.device.startswith("cuda") else [64])
    bad = [e for e in sweep if e % n]
    if bad:
        raise SystemExit(f"mmimic bench: --num-envs {bad} do not split over --nproc {n}; give multiples of {n}")
    single_args = argparse.Namespace(**{**vars(args), "nproc": 1, "out": "-"})
    print(f"mmimic bench --train --nproc {n}: 1 process first, then {n}", flush=True)
    cmd_bench_train(single_args)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ranked.json"
        rc, _ = _run_forwarding_signals(_torchrun_command(args.argv, n, ("--out", str(out))))
        if rc or not out.is_file():
            raise SystemExit(f"mmimic bench: the {n}-process run failed (torchrun exit status {rc}); see above")
        ranked = json.loads(out.read_text())
    single = single_args.result
    rows = []
    for one, many in zip(single["rows"], ranked["rows"]):
        scaling = many["train_steps_per_s"] / one["train_steps_per_s"]
        rows.append({"backend": one["backend"], "num_envs": one["num_envs"], "nproc": n,
                     "train_steps_per_s_1": one["train_steps_per_s"], "train_steps_per_s_n": many["train_steps_per_s"],
                     "env_steps_per_s_1": one["env_steps_per_s"], "env_steps_per_s_n": many["env_steps_per_s"],
                     "scaling": scaling, "efficiency": scaling / n})
    result = {**single, "kind": "train-scaling", "nproc": n, "rows": rows, "single": single, "ranked": ranked,
              "command": args.command_line}
    print(f"{'backend':>8} {'envs':>6} {'1 proc steps/s':>15} {f'{n} procs steps/s':>16} {'scaling':>8} {'eff.':>6}")
    for r in rows:
        print(f"{r['backend']:>8} {r['num_envs']:>6} {r['train_steps_per_s_1']:>15,.0f} "
              f"{r['train_steps_per_s_n']:>16,.0f} {r['scaling']:>8.2f} {r['efficiency']:>6.2f}")
    print(f"(scaling: {n}-process over 1-process training steps/s on the same total envs; efficiency = scaling / {n}, "
          f"the figure for {n} devices; processes sharing one machine's CPU cores can at best keep scaling near 1)")
    if args.out != "-":
        stem = f"bench-train-{args.model}-nproc{n}-{args.device.replace(':', '')}.json"
        path = Path(args.out) if args.out else Path("benchmarks/results") / stem
        write_json(result, path)
        print(f"wrote {path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from mmimic.bench import format_table, run_bench

    _quiet_warp(args.verbose)
    _check_backends(args.backend, args.device, "bench")
    if args.train:
        return cmd_bench_train(args)
    if args.overrides or args.config:
        raise SystemExit("mmimic bench: --config and KEY=VALUE overrides are for --train")
    sweep = args.num_envs or ([1024, 4096, 8192] if args.device.startswith("cuda") else [16, 64])
    steps = args.steps or (200 if args.device.startswith("cuda") else 10)
    warmup = args.warmup if args.warmup is not None else (20 if args.device.startswith("cuda") else 2)
    options = {"remove_fingers": True} if args.no_fingers else {}
    print(f"mmimic bench: {args.model} on {args.device} ({', '.join(args.backend)}), worlds {sweep}, {steps} timed "
          f"steps after {warmup} warm-up (first run on a machine compiles warp kernels: ~1 min per model)", flush=True)
    result = run_bench(args.model, args.device, sweep, steps, warmup, options, command=args.command_line,
                       progress=lambda msg: print(f"  ... {msg}", flush=True), backends=args.backend,
                       threads=args.threads)
    print(format_table(result))
    _write_result(args, result, f"bench-{args.model}{'-nofingers' if args.no_fingers else ''}")
    if args.device.startswith("cuda") and max(sweep) >= 4096:
        worst = min(r["env_over_raw"] for r in result["rows"] if r["num_envs"] >= 4096)
        print(f"env/raw at >= 4096 worlds: {worst:.3f} (goal >= 0.9)")
    c_rows = [r for r in result["rows"] if r["backend"] == "mujoco"]
    if c_rows:
        print(f"mujoco env/raw: {min(r['env_over_raw'] for r in c_rows):.3f} (goal >= 0.9)")
    return 0


def cmd_posture(args: argparse.Namespace) -> int:
    from mmimic.envs.posture_demo import load_run_config, run_posture_demo

    _quiet_warp(args.verbose)
    flags = [f"env.{k}={v}" for k, v in (("model", args.model), ("num_envs", args.num_envs)) if v is not None]
    flags += [f"steps={args.steps}"] if args.steps is not None else []
    flags += ["env.embodiment.remove_fingers=true"] if args.no_fingers else []
    flags += [f"out_dir={args.out}"] if args.out is not None else []
    flags += [f"env.backend={args.backend}"] if args.backend is not None else []
    try:
        cfg = load_run_config(args.config, flags + list(args.overrides))
    except Exception as exc:  # noqa: BLE001 - report config errors in one line
        raise SystemExit(f"mmimic posture: bad configuration: {exc}") from None
    cfg.env.device = _checked("posture", _device, args.device if args.device is not None else cfg.env.device)
    _checked("posture", _model, cfg.env.model)
    _check_backends([cfg.env.backend], cfg.env.device, "posture")
    print(f"mmimic posture: {cfg.env.model}, {cfg.env.num_envs} envs on {cfg.env.device} ({cfg.env.backend} "
          f"backend), {cfg.steps} steps. Runs the posture-holding task of MuscleEnv with a random-excitation policy "
          "and logs reward, episode length, early terminations and speed to TensorBoard. Nothing is learned "
          "(imitation is trained by `mmimic train`).", flush=True)
    try:
        summary = run_posture_demo(cfg)
    except OSError as exc:  # --out not a folder / not writable
        raise SystemExit(f"mmimic posture: {exc}") from None
    for key, value in summary.items():
        print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")
    print(f"TensorBoard: tensorboard --logdir {cfg.out_dir}")
    return 0


def _kinds(value: str) -> list[str]:
    from mmimic.motion.synth import KINDS

    return _names_from(KINDS, "motion kind")(value)


def _positive(kind):
    def parse(value: str):
        try:
            out = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
        if not out > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {value!r}")
        return out
    return parse


def cmd_motion_synth(args: argparse.Namespace) -> int:
    from mmimic.motion.smpl import load_amass
    from mmimic.motion.synth import write_synth

    last = args.seed + args.count - 1
    print(f"mmimic motion synth: {', '.join(args.kinds)} x {args.count} (seeds {args.seed}..{last}), "
          f"{args.duration:g} s at {args.fps:g} fps -> {args.out} (synthetic SMPL-H motions in the AMASS "
          "file format, not captured data)", flush=True)
    try:
        paths = write_synth(args.out, args.kinds, args.count, args.seed, args.fps, args.duration)
    except (ValueError, OSError) as exc:  # bad --out (a file, not writable, foreign files), --fps/--duration
        raise SystemExit(f"mmimic motion synth: {exc}") from None
    for path in paths:
        clip = load_amass(path)
        print(f"  wrote {path} ({clip.num_frames} frames, {path.stat().st_size / 1024:.0f} KiB)")
    return 0


def cmd_retarget(args: argparse.Namespace) -> int:
    from mmimic.motion.batch import retarget_dir

    emb = "(no fingers)" if args.no_fingers else ""
    print(f"mmimic retarget: {args.input} -> {args.model}{emb} at "
          f"{f'{args.fps:g} fps' if args.fps else 'the control rate'}, {args.jobs} job(s), out {args.out}", flush=True)
    try:
        summary = retarget_dir(args.input, args.model, args.out, smpl_model_dir=args.smpl_model_dir, jobs=args.jobs,
                               fps=args.fps, remove_fingers=args.no_fingers)
    except (ValueError, OSError) as exc:  # bad input/--out/--fps/model: nothing was retargeted
        raise SystemExit(f"mmimic retarget: {exc}") from None
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: exit 128 + signal, as `mmimic train` does
        signum, written = getattr(exc, "signum", 2), getattr(exc, "summary_path", None)
        print("mmimic retarget: interrupted; finished clips are kept" + (
            f" and {written} lists the others as errors; run the same command again to resume" if written else ""),
            file=sys.stderr)
        return 128 + signum
    agg = summary["aggregate"]
    sources = sorted({e.get("body_model") for e in summary["clips"].values() if e.get("body_model")})
    if sources:
        print(f"body model: {'; '.join(sources)}")
    print(f"clips: {agg['clips']} ({agg['ok']} retargeted, {agg['existing']} already there, {agg['errors']} errors)")
    for key in ("rmse_m", "joint_limit_violation_pct", "tendon_jump_pct", "floor_penetration_m", "seconds_per_frame"):
        if agg[key] is not None:
            print(f"  mean {key}: {agg[key]:.4g}")
    print(f"summary: {Path(args.out) / 'summary.json'}")
    if summary.get("incomplete"):
        print(f"mmimic retarget: not finished: {summary['incomplete']}", file=sys.stderr)
    return 0 if agg["errors"] == 0 else 1


def cmd_train(args: argparse.Namespace) -> int:
    from mmimic.config import load_config
    from mmimic.rl.trainer import Trainer, TrainConfig, finetune_config

    _quiet_warp(args.verbose)
    overrides = list(args.overrides)
    config = args.config
    if args.resume:
        where = Path(args.resume)
        if not where.exists():
            raise SystemExit(f"mmimic train: --resume {where}: no such run directory or checkpoint file")
        run_dir = where if where.is_dir() else where.parent.parent
        if not config and not (run_dir / "config.yaml").is_file():
            raise SystemExit(f"mmimic train: --resume {where}: {run_dir / 'config.yaml'} is missing; give the "
                             "run's config with --config")
        config = config or str(run_dir / "config.yaml")
        overrides.append(f"resume={where}")
    try:
        cfg = load_config(TrainConfig, config, overrides)
        cfg.validate()
    except Exception as exc:  # noqa: BLE001 - one line naming the bad key or file
        raise SystemExit(f"mmimic train: bad configuration: {exc}") from None
    if cfg.init_from:
        try:
            cfg = finetune_config(cfg, args.overrides)
        except (FileNotFoundError, RuntimeError) as exc:
            raise SystemExit(f"mmimic train: init_from: {exc}") from None
    cfg.env.device = _checked("train", _device, args.device or cfg.env.device)
    if args.backend:
        cfg.env.backend = args.backend
    _checked("train", _model, cfg.env.model)
    _check_backends([cfg.env.backend], cfg.env.device, "train")
    if cfg.env.device == "cpu" and str(cfg.env.num_envs).isdigit() and int(cfg.env.num_envs) > 256:
        print(f"note: {cfg.env.num_envs} envs on CPU will be slow (a 2-core CPU runs ~1,000 bimanual env steps/s); "
              "env.num_envs=auto picks a CPU-sized count", flush=True)
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_ranks(args, cfg)
    rank = os.environ.get("RANK")
    where = f"mmimic train (rank {rank})" if rank is not None else "mmimic train"
    try:
        dist = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun: join its process group
            from mmimic.rl.distributed import Dist

            dist = Dist.from_environment(cfg.env.device)
        trainer = Trainer(cfg, dist=dist)
    except (OSError, ValueError, RuntimeError) as exc:  # bad files, paths, options: one line
        raise SystemExit(f"{where}: {exc}") from None
    try:
        last = trainer.train()
    except Exception as exc:
        if rank is not None:  # say which rank failed; torchrun then stops the others
            print(f"{where}: failed at iteration {trainer.iteration + 1}: {type(exc).__name__}: {exc}",
                  file=sys.stderr, flush=True)
        raise
    if trainer.dist is not None:
        trainer.dist.close()
    if trainer.stopped_by:
        return 128 + trainer.stopped_by
    if not trainer.is_main:
        return 0
    print(f"done: {trainer.iteration} iterations, {trainer.env_steps:,} env steps; run dir {trainer.run_dir}")
    if last:
        print(f"  reward {last['reward/mean']:.4f}, episode length {last.get('episode/episode_length', float('nan')):.1f}")
    print(f"TensorBoard: tensorboard --logdir {Path(trainer.run_dir).parent}")
    return 0


def _torchrun_command(argv: list[str], n: int, extra: tuple[str, ...] = ()) -> list[str]:
    """torchrun (one machine, ``n`` processes) on this command line without its --nproc (and its --out)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--nproc", "--out") and extra or a == "--nproc":
            skip = True
        elif not a.startswith("--nproc=") and not (extra and a.startswith("--out=")):
            out.append(a)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
            "-m", "mmimic.cli", *out, *extra]


def _run_forwarding_signals(cmd: list[str]) -> tuple[int, int]:
    """Run ``cmd`` (torchrun); SIGTERM / SIGINT sent to this process go on to it (a cluster's pre-emption
    reaches the ranks, which finish the iteration and checkpoint). Returns its exit status and the last
    signal forwarded (0: none)."""
    import signal
    import subprocess

    proc = subprocess.Popen(cmd)
    previous, got = {}, [0]

    def forward(signum, _frame):
        got[0] = signum
        if proc.poll() is None:
            proc.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, forward)
    try:
        return proc.wait(), got[0]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _launch_ranks(args: argparse.Namespace, cfg) -> int:
    """``mmimic train --nproc N``: the same command in N processes under torchrun (one machine; for several,
    run torchrun yourself, see mmimic.rl.distributed). Returns torchrun's exit status."""
    import torch

    n = args.nproc
    if cfg.env.device.startswith("cuda") and n > torch.cuda.device_count():
        raise SystemExit(f"mmimic train: --nproc {n} on CUDA needs {n} GPUs, torch sees {torch.cuda.device_count()}")
    if str(cfg.env.num_envs).isdigit() and int(cfg.env.num_envs) % n:
        raise SystemExit(f"mmimic train: env.num_envs={cfg.env.num_envs} does not split over --nproc {n}; "
                         f"give a multiple of {n}")
    cmd = _torchrun_command(args.argv, n)
    print(f"mmimic train: {n} processes ({'nccl, one GPU each' if cfg.env.device.startswith('cuda') else 'gloo, CPU'})"
          f": {' '.join(cmd[1:])}", flush=True)
    rc, signum = _run_forwarding_signals(cmd)
    if signum:
        import signal

        print(f"mmimic train --nproc {n}: stopped by {signal.Signals(signum).name}; the ranks finished their "
              "iteration and wrote a checkpoint (see above)", file=sys.stderr)
        return 128 + signum
    if rc:
        print(f"mmimic train --nproc {n}: a process failed (torchrun exit status {rc}); the others were stopped. "
              "Its error is above ('mmimic train (rank R): ...' and torchrun's 'Root Cause').", file=sys.stderr)
    return rc


def _eval_motions(args: argparse.Namespace, cfg, command: str = "eval") -> str:
    """--motions DIR|LIST (with --split S: DIR/S.txt), or the run's demo set (--split, default test)."""
    if args.motions:
        where = Path(args.motions)
        if not where.exists():
            raise SystemExit(f"mmimic {command}: --motions {where}: no such file or directory")
        if args.split and where.is_dir():
            listing = where / f"{args.split}.txt"
            if not listing.is_file():
                raise SystemExit(f"mmimic {command}: --split {args.split}: {listing} does not exist (a list file of "
                                 "the split's clips, one path per line)")
            return str(listing)
        return str(where)
    from mmimic.motion.demo import ensure_demo_library

    return str(ensure_demo_library(cfg.env.model, cfg.demo_data_dir, remove_fingers=cfg.env.embodiment.remove_fingers,
                                   split=args.split or "test"))


def cmd_eval(args: argparse.Namespace) -> int:
    from mmimic.eval.play import format_table, load_run, run_eval

    _quiet_warp(args.verbose)
    device = _checked("eval", _device, args.device)
    if args.backend:
        _check_backends([args.backend], device, "eval")
    try:
        cfg, _, path = load_run(args.run, "cpu")
    except (OSError, RuntimeError, ValueError) as exc:
        raise SystemExit(f"mmimic eval: {exc}") from None
    motions = _eval_motions(args, cfg)
    out = Path(args.out) if args.out else Path(path).parent.parent / "eval"
    if args.video:  # before the metrics: a machine that cannot render says so at once
        _video_checks("eval", args, out / "videos" / "check.mp4")
    rule = "none" if args.no_termination else f"mean root-relative site error > {args.max_site_error:g} m"
    print(f"mmimic eval: {path} ({cfg.env.model}) on {motions}, {args.episodes_per_clip} episode(s) per clip, "
          f"{'stochastic' if args.stochastic else 'mean'} actions, termination: {rule}", flush=True)
    max_site_error = 0.0 if args.no_termination else args.max_site_error
    try:
        result = run_eval(args.run, motions, out, episodes_per_clip=args.episodes_per_clip,
                          stochastic=args.stochastic, num_envs=args.num_envs, backend=args.backend, device=device,
                          max_site_error=max_site_error, command=args.command_line, gait=not args.no_gait,
                          progress=lambda done, total: print(f"  ... {done}/{total} episodes", flush=True))
    except (OSError, RuntimeError, ValueError) as exc:  # motions of another model, an empty set, ...
        raise SystemExit(f"mmimic eval: {exc}") from None
    print(format_table(result))
    g = result.get("gait")
    if g:
        print(f"gait of the walking clips: {g['error']}" if "error" in g else
              f"gait of the walking clips: mean r = {g['mean_r']:.3f} vs human data"
              + (f", EMG mean r = {g['emg_mean_r']:.3f}" if "emg_mean_r" in g else "") + f" ({g['out']})")
    print(f"wrote {out / 'metrics.json'} and {out / 'metrics.csv'}")
    if args.video:
        from mmimic.eval.play import write_report
        from mmimic.eval.video import record_worst

        try:
            result["videos"] = record_worst(result, args.run, motions, out, args.video, args.width, args.height,
                                            args.fps, stochastic=args.stochastic, backend=args.backend,
                                            device=device, max_site_error=max_site_error, log=_stderr)
            write_report(result, out)
        except (OSError, RuntimeError, ValueError) as exc:
            raise SystemExit(f"mmimic eval: videos: {exc} (the metrics are written: {out / 'metrics.json'})") from None
        for v in result["videos"]:
            print(f"wrote {out / v['path']} ({v['frames']} frames; site rel {v['site_rel_error_m']:.4f} m)")
    return 0


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _video_checks(command: str, args: argparse.Namespace, path: Path) -> None:
    """Size, frame rate, an .mp4 path in a writable folder and a working OpenGL, or one line and exit."""
    from mmimic.eval.video import check_gl, check_video_args, check_video_path

    try:
        check_video_args(args.width, args.height, args.fps)
        check_video_path(path)
        check_gl()
    except (OSError, RuntimeError, ValueError) as exc:
        raise SystemExit(f"mmimic {command}: {exc}") from None


def cmd_play(args: argparse.Namespace) -> int:
    from mmimic.eval.play import eval_env, load_run, policy
    from mmimic.eval.video import record_clips, video_info

    _quiet_warp(args.verbose)
    device = _checked("play", _device, args.device)
    if args.backend:
        _check_backends([args.backend], device, "play")
    if args.video:  # before anything is loaded: a bad path or a machine that cannot render says so at once
        _video_checks("play", args, Path(args.video))
    try:
        cfg, state, path = load_run(args.run, device)
    except (OSError, RuntimeError, ValueError) as exc:
        raise SystemExit(f"mmimic play: {exc}") from None
    if not args.video:
        args.video = str(Path(path).parent.parent / "videos" / "play.mp4")
        _video_checks("play", args, Path(args.video))
    motions = _eval_motions(args, cfg, "play")
    _stderr(f"mmimic play: {path} ({cfg.env.model}) on {motions}, {'stochastic' if args.stochastic else 'mean'} "
            f"actions -> {args.video} ({args.width}x{args.height})")
    try:
        env = eval_env(cfg, motions, device, args.backend, 0.0 if args.no_termination else args.max_site_error,
                       num_envs=1)
        names = env.task.library.names
        if args.clips:
            unknown = [c for c in args.clips if c not in names]
            if unknown:
                raise ValueError(f"--clips: unknown clip(s) {', '.join(unknown)}; the motions have: "
                                 f"{', '.join(names[:20])}{' ...' if len(names) > 20 else ''}")
        clips = [names.index(c) for c in args.clips] if args.clips else None
        rows = record_clips(env, policy(cfg, state, path, env, args.stochastic), args.video, clips=clips,
                            width=args.width, height=args.height, fps=args.fps, log=_stderr)
    except (OSError, RuntimeError, ValueError) as exc:
        raise SystemExit(f"mmimic play: {exc}") from None
    info = video_info(args.video)
    print(f"wrote {args.video}: {len(rows)} clip(s), {info['frames']} frames, {info['width']}x{info['height']}, "
          f"{info['fps']:.3g} frames/s ({info['codec']})")
    return 0


def cmd_gait(args: argparse.Namespace) -> int:
    from mmimic.eval.gait import GaitError, format_gait, run_gait
    from mmimic.motion.motion_file import MotionFileError

    try:
        result = run_gait(args.inputs, args.out, args.heel_strikes)
    except (GaitError, MotionFileError) as exc:
        raise SystemExit(f"mmimic gait: {exc}") from None
    print(format_gait(result))
    out = Path(args.out)
    extra = f", {out / 'emg.json'}, {out / 'emg.png'}" if "emg" in result else ""
    print(f"wrote {out / 'gait.json'}, {out / 'gait.png'}{extra}")
    return 0


def cmd_curve(args: argparse.Namespace) -> int:
    from mmimic.bench.learning import record_learning

    out = args.out or str(Path("benchmarks/results") / f"learning-{Path(args.run).name}")
    try:
        result = record_learning(args.run, out, command=args.run_command or "", note=args.note or "")
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"mmimic curve: {exc}") from None
    s = result["summary"]
    print(f"{args.run}: {s['env_steps']:,} env steps, {s['wall_minutes']} min")
    for key, v in s.items():
        if isinstance(v, dict):
            print(f"  {key}: {v['start']:.4g} -> {v['end']:.4g}")
    print(f"wrote {out}.json and {out}.png")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import json

    from mmimic.bench import write_json
    from mmimic.bench.doctor import format_table, run_doctor

    _quiet_warp(args.verbose)
    _check_backends([args.backend], args.device, "doctor")
    cuda = args.device.startswith("cuda")
    models = args.models or (["arm26", "bimanual", "myofullbody"] if cuda else ["arm26", "bimanual"])
    sizes = args.num_envs or ([64, 4096] if cuda else [16])
    print(f"mmimic doctor: {', '.join(models)} at {', '.join(map(str, sizes))} worlds on {args.device} "
          f"(backend {args.backend}); the first run on a machine compiles warp kernels (~1 min per model)", flush=True)
    result = run_doctor(args.device, models, sizes, backend=args.backend, steps=args.steps,
                        checkpoint=not args.no_checkpoint, command=args.command_line,
                        progress=lambda msg: print(f"  ... {msg}", flush=True))
    print(format_table(result))
    if args.out != "-":
        out = Path(args.out or f"doctor-{args.device.replace(':', '')}.json")
        try:
            write_json(json.loads(json.dumps(result, default=str)), out)
        except OSError as exc:
            raise SystemExit(f"mmimic doctor: cannot write {out}: {exc}") from None
        print(f"wrote {out} (attach it to bug reports)")
    return 0 if result["ok"] else 1


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose ``epilog`` may be a callable, called when the help is printed: the train
    parser's list of config keys imports the trainer (seconds), which ``mmimic --help`` and the other
    commands should not pay for. Subparsers are made of the same class."""

    def format_help(self) -> str:
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults and wraps one-paragraph texts as usual; a text with line breaks (the train epilog's
    table of config keys) is printed as written, as ``argparse.RawDescriptionHelpFormatter`` does."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def _train_epilog() -> str:
    """Every key of TrainConfig with its default and doc (the trailing comments of the config classes)."""
    import shutil
    import textwrap

    width = max(shutil.get_terminal_size().columns - 2, 70)  # as argparse sizes its help
    intro = textwrap.fill("Config keys, with their defaults. Any can be overridden as KEY=VALUE (after an "
                          "experiment YAML given with --config), e.g. ppo.lr=1e-4 "
                          "env.task.rewards.site_pos.weight=0.5", width)
    try:
        from mmimic.config import format_field_docs
        from mmimic.rl.trainer import TrainConfig

        return f"{intro}\n\n{format_field_docs(TrainConfig, width=width)}"
    except Exception as exc:  # noqa: BLE001 - the rest of the help is still worth printing
        return f"{intro}\n\n(the config keys could not be listed: {type(exc).__name__}: {exc})"


def _clip_names(value: str) -> list[str]:
    out = [v.strip() for v in value.split(",") if v.strip()]
    if not out:
        raise argparse.ArgumentTypeError(f"expected comma-separated clip names, got {value!r}")
    return out


VIDEO_DEFAULTS = (640, 480, 30.0)  # width, height, fps: mmimic.eval.video's (not imported to build the parser)


def _policy_play_args(parser: argparse.ArgumentParser, verb: str) -> None:
    """The options ``eval`` and ``play`` share: which run, which clips, how the policy acts and ends."""
    parser.add_argument("run", help="run folder of `mmimic train`, or one of its checkpoints")
    parser.add_argument("--motions", default=None, help="directory or list file of motions retargeted onto the run's "
                                                         "model (default: the run's demo set)")
    parser.add_argument("--split", default=None, help=f"with --motions DIR: {verb} DIR/SPLIT.txt; without: the demo "
                                                       "set's split (train or test; default test)")
    parser.add_argument("--stochastic", action="store_true", help="sample actions from the policy instead of its mean")
    parser.add_argument("--backend", type=_backend, default=None, help="simulator (default: the run's)")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:K")
    parser.add_argument("--no-termination", action="store_true", help="play every clip to its end")
    parser.add_argument("--max-site-error", type=float, default=0.5,
                        help="termination rule: mean root-relative site deviation above this (m)")


def _video_size_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int, default=VIDEO_DEFAULTS[0], help="video width (even, pixels)")
    parser.add_argument("--height", type=int, default=VIDEO_DEFAULTS[1], help="video height (even, pixels)")
    parser.add_argument("--fps", type=_positive(float), default=VIDEO_DEFAULTS[2],
                        help="about this many frames/s, in real time (every k-th control step is drawn)")


def build_parser() -> argparse.ArgumentParser:
    from mmimic import __version__

    parser = _Parser(
        prog="mmimic",
        description="Muscle-driven humanoid motion imitation on MuJoCo Warp. Models: arm26 (project's 6-muscle "
                    "arm), bimanual (126 muscles), myofullbody (416 muscles).",
    )
    parser.add_argument("--version", action="version", version=f"mmimic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    b = sub.add_parser(
        "bench", help="throughput of the raw simulator vs MuscleEnv, and their ratio, per backend",
        description="Measures, in one run, for each backend and world count: raw simulator physics and control "
                    "steps/s (mujoco_warp, CUDA graph on GPU; or the C backend's thread pool), "
                    "MuscleEnv.step_and_reset steps/s with random actions, and env/raw; with two backends, "
                    "their env speed ratio. Prints a table and writes JSON with device, versions and command.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    b.add_argument("--model", type=_model, default="bimanual", help="embodiment name")
    b.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="--train only: training config overrides (e.g. ppo.epochs=3)")
    b.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda or cuda:K")
    b.add_argument("--backend", type=_backends, default=["auto"],
                   help="comma-separated simulator backends to measure in one run: warp (mujoco_warp), mujoco "
                        "(MuJoCo's C engine, CPU), auto (warp on CUDA, mujoco on CPU); e.g. warp,mujoco")
    b.add_argument("--threads", type=_positive(int), default=None,
                   help="mujoco backend: simulator threads (default: the cores this process may use)")
    b.add_argument("--config", default=None, help="--train only: experiment YAML to take the PPO/network settings from")
    b.add_argument("--num-envs", type=_int_list, default=None,
                   help="comma-separated world counts (default: 1024,4096,8192 on CUDA, 16,64 on CPU)")
    b.add_argument("--steps", type=int, default=None, help="timed control steps per point (default 200 CUDA, 10 CPU)")
    b.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 20 CUDA, 2 CPU)")
    b.add_argument("--no-fingers", action="store_true", help="drop finger joints and muscles (64 / 354 muscles)")
    b.add_argument("--train", action="store_true",
                   help="instead: training-loop steps/s (collect + PPO update) vs env-only steps/s of the imitation "
                        "env on the demo motions; --steps counts PPO iterations (default 20 CUDA, 3 CPU), "
                        "--num-envs defaults to 4096 CUDA, 64 CPU")
    b.add_argument("--nproc", type=_positive(int), default=1,
                   help="--train only: also run the training loop in this many processes (torchrun) on the same "
                        "total envs, and record the scaling against 1 process")
    b.add_argument("--out", default=None,
                   help="JSON path ('-' for none; default benchmarks/results/bench-MODEL-DEVICE.json)")
    b.add_argument("-v", "--verbose", action="store_true", help="show warp's kernel compilation messages")
    b.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "posture", help="run the posture-holding task with a random policy, log to TensorBoard",
        description="Rolls MuscleEnv's posture task (hold a target posture; reward exp(-k*error^2) minus effort; "
                    "ends on posture loss or a fall) with random muscle excitations and writes TensorBoard "
                    "events under OUT/posture-MODEL-TIME/ (`make posture`): a baseline a trained posture policy must beat.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. env.task.target_range=0.2 env.embodiment.timestep=0.002")
    p.add_argument("--config", default=None, help="experiment YAML (e.g. experiments/posture.yaml)")
    p.add_argument("--model", type=_model, default=None, help="embodiment name (config: env.model, default arm26)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:K (config: env.device)")
    p.add_argument("--backend", type=_backend, default=None,
                   help="simulator: auto (warp on CUDA, mujoco on CPU), warp, mujoco (config: env.backend)")
    p.add_argument("--num-envs", type=int, default=None, help="parallel worlds (config: env.num_envs)")
    p.add_argument("--steps", type=int, default=None, help="control steps to run (config: steps)")
    p.add_argument("--no-fingers", action="store_true", help="drop finger joints and muscles")
    p.add_argument("--out", default=None, help="directory for run folders (config: out_dir, default runs)")
    p.add_argument("-v", "--verbose", action="store_true", help="show warp's kernel compilation messages")
    p.set_defaults(func=cmd_posture)

    m = sub.add_parser(
        "motion", help="motion data: synthesize demo clips (more actions as the motion stages land)",
        description="Motion data tools. ACTION synth writes synthetic motions in the AMASS .npz format.")
    msub = m.add_subparsers(dest="motion_command", metavar="ACTION")
    m.set_defaults(func=lambda args: m.print_help() or 2)
    ms = msub.add_parser(
        "synth", help="write synthetic AMASS-format motions (walk, reach, wave, ...)",
        description="Writes OUT/<kind>_<seed>.npz: SMPL-H layout (156 pose columns), mean shape, neutral "
                    "gender, z-up world, facing +x, feet on the floor (built-in skeleton), with a 'source' "
                    "field naming it as synthetic. Kinds: walk, reach, wave, bimanual_lift, squat, "
                    "arm_circles. Each seed varies amplitudes, speeds and phases a little; the same seed gives "
                    "the same file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ms.add_argument("--out", required=True, help="output directory (created if missing)")
    ms.add_argument("--kinds", type=_kinds, default="walk,reach,wave,bimanual_lift,squat,arm_circles",
                    help="comma-separated motion kinds")
    ms.add_argument("--count", type=_positive(int), default=1,
                    help="clips per kind (seeds SEED .. SEED+COUNT-1)")
    ms.add_argument("--seed", type=int, default=0, help="first seed")
    ms.add_argument("--fps", type=_positive(float), default=30.0, help="frame rate (mocap_framerate)")
    ms.add_argument("--duration", type=_positive(float), default=4.0, help="seconds per clip")
    ms.set_defaults(func=cmd_motion_synth)

    t = sub.add_parser(
        "train", help="train an imitation policy (PPO, optional AMP / error-aggregation reward)",
        description="Trains one policy on MuscleImitationEnv from an experiment config (experiments/*.yaml) plus "
                    "key=value overrides (e.g. env.num_envs=4096 iterations=2000 adversarial.mode=amp). Writes "
                    "RUN_DIR/config.yaml, TensorBoard events and checkpoints/ (atomic, last k kept). --resume "
                    "RUN_DIR continues a run where it stopped; init_from=CKPT fine-tunes on other motions "
                    "(env.motions=DIR, reset_log_std=-1.0). Without env.motions the demo motions are "
                    "synthesized and retargeted into data/ at first use.",
        epilog=_train_epilog, formatter_class=_HelpFormatter)
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys)")
    t.add_argument("--config", default=None, help="experiment YAML (e.g. experiments/bimanual.yaml)")
    t.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:K (config: env.device)")
    t.add_argument("--backend", type=_backend, default=None,
                   help="simulator: auto (warp on CUDA, MuJoCo's C engine on CPU), warp, mujoco (config: env.backend)")
    t.add_argument("--resume", default=None, help="run directory or checkpoint to continue")
    t.add_argument("--nproc", type=_positive(int), default=1,
                   help="train data-parallel in this many processes (torchrun; one GPU each on CUDA, gloo on CPU); "
                        "env.num_envs is the total over them")
    t.add_argument("-v", "--verbose", action="store_true", help="show warp's kernel compilation messages")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser(
        "eval", help="evaluate a trained policy: play every clip from start to end, write tracking metrics",
        description="Plays every clip of a motion set from its start to its end with the run's policy (the mean "
                    "action unless --stochastic) and writes OUT/metrics.json (aggregate and per clip) and "
                    "OUT/metrics.csv, and prints a table. Metrics: joint_pos_error_rad (RMSE over non-root "
                    "joints), site_rel_error_m (RMSE of root-relative mimic sites), site_abs_error_m (mean site "
                    "distance after removing the initial root xy offset), root_pos_error_m (RMSE) and "
                    "root_yaw_error_rad (free roots), early_termination_rate, frame_coverage, mean_activation. "
                    "Without --motions: the run's held-out demo clips (--split test).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _policy_play_args(e, "evaluate")
    e.add_argument("--episodes-per-clip", type=int, default=1, help="episodes per clip (>1 with --stochastic)")
    e.add_argument("--num-envs", type=int, default=None, help="worlds played at once (default: one per episode, <= 64)")
    e.add_argument("--out", default=None, help="output directory (default RUN/eval)")
    e.add_argument("--no-gait", action="store_true",
                   help="skip the gait and EMG analysis of walking clips (clips named walk/run/jog/gait, on models "
                        "with legs; otherwise their first episodes go to OUT/rollouts and OUT/gait)")
    e.add_argument("--video", type=_positive(int), default=None, metavar="K",
                   help="also render the K clips with the largest site_rel_error_m to OUT/videos/CLIP.mp4 "
                        "(listed in metrics.json under videos)")
    _video_size_args(e)
    e.add_argument("-v", "--verbose", action="store_true", help="show warp's kernel compilation messages")
    e.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "play", help="play clips with a trained policy and write an H.264 mp4 video",
        description="Plays clips from their start to their end with the run's policy (the mean action unless "
                    "--stochastic), one after another, and renders them headless (MuJoCo's renderer; EGL unless "
                    "MUJOCO_GL says otherwise) into one mp4: the policy's body, muscles coloured by activation, "
                    "with the reference as a translucent green ghost over it, a camera that follows the root, "
                    "the clip's name and its errors as text. Without --motions: the run's held-out demo clips.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _policy_play_args(p, "play")
    p.add_argument("--clips", type=_clip_names, default=None, metavar="NAME,...", help="only these clips (file stems)")
    p.add_argument("--video", default=None, metavar="OUT.mp4",
                   help="the video to write, its folder made if missing (default RUN/videos/play.mp4)")
    _video_size_args(p)
    p.add_argument("-v", "--verbose", action="store_true", help="show warp's kernel compilation messages")
    p.set_defaults(func=cmd_play)

    g = sub.add_parser(
        "gait", help="gait validation: joint kinematics (and EMG for rollouts) over the gait cycle vs human data",
        description="Cuts walks (retargeted motions, or rollouts written by `mmimic eval` for walking clips) into "
                    "stride cycles at heel strikes (foot-floor contact onsets for rollouts; calcaneus height and "
                    "speed for motions), drops strides beyond mean +- 2 SD, resamples each to 101 points, and "
                    "compares hip flexion, knee flexion and ankle dorsiflexion (both sides) with the mean of 42 "
                    "adults (Fukuchi et al. 2018, CC BY 4.0): Pearson r and RMSE per joint, mean r. Writes "
                    "OUT/gait.json and OUT/gait.png; for rollouts also OUT/emg.json and OUT/emg.png (muscle "
                    "activations vs EMG envelopes, Falisse et al. 2019; r and on/off agreement per muscle). Files "
                    "that are not walks are reported and skipped; exit status 1 if none is left.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g.add_argument("inputs", nargs="+", help="motion or rollout .npz files, or folders of them (one model)")
    g.add_argument("--out", required=True, help="output directory")
    g.add_argument("--heel-strikes", choices=("auto", "contact", "calcaneus"), default="auto",
                   help="heel-strike detection: auto = contact for rollouts, calcaneus for motions")
    g.set_defaults(func=cmd_gait)

    c = sub.add_parser(
        "curve", help="a training run's learning curves as JSON + PNG (evidence for benchmarks/results/)",
        description="Reads RUN's TensorBoard events and writes OUT.json (rel-site error, joint error, episode "
                    "length, early-termination rate, speed and reward against env steps and wall time; start/end "
                    "summary; the run's config, the command that made it, versions) and OUT.png (the four curves).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("run", help="run folder of `mmimic train` (runs/NAME-MODEL-TIME)")
    c.add_argument("--out", default=None, help="output path without suffix (default benchmarks/results/learning-RUN)")
    c.add_argument("--run-command", default=None, help="the command line that made the run, to record with it")
    c.add_argument("--note", default=None, help="free text to record (machine, what was tuned)")
    c.set_defaults(func=cmd_curve)

    d = sub.add_parser(
        "doctor", help="self-check of this machine: versions, devices, per model a short run (CUDA graphs, parity "
                       "with C MuJoCo, NaN, memory, steps/s, host syncs), a checkpoint round trip",
        description="The command to run first on a new machine, above all one with a GPU. Prints the versions "
                    "(driver, CUDA, torch, warp, mujoco, mujoco_warp) and devices; per model and world count builds "
                    "the env and checks: CUDA graphs captured, 20-step parity against C MuJoCo on 4 worlds, NaN, "
                    "memory used, env steps/s, no host sync in one env step (CUDA); then a checkpoint save/resume "
                    "round trip. A failing run (e.g. a CUDA error) is reported with the command to rerun it with "
                    "CUDA_LAUNCH_BLOCKING=1. Prints a pass/fail table, writes JSON; exit status 1 if a check failed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda or cuda:K")
    d.add_argument("--models", type=_models, default=None,
                   help="comma-separated models (default: arm26,bimanual,myofullbody on CUDA; arm26,bimanual on CPU)")
    d.add_argument("--num-envs", type=_int_list, default=None,
                   help="comma-separated world counts (default: 64,4096 on CUDA, 16 on CPU)")
    d.add_argument("--backend", type=_backend, default="auto",
                   help="simulator: auto (warp on CUDA, mujoco on CPU), warp, mujoco")
    d.add_argument("--steps", type=_positive(int), default=None, help="timed env steps per run (default 100 CUDA, 20 CPU)")
    d.add_argument("--no-checkpoint", action="store_true", help="skip the checkpoint round trip")
    d.add_argument("--out", default=None, help="JSON path ('-' for none; default doctor-DEVICE.json)")
    d.add_argument("-v", "--verbose", action="store_true", help="show warp's kernel compilation messages")
    d.set_defaults(func=cmd_doctor)

    r = sub.add_parser(
        "retarget", help="retarget AMASS/SMPL motions onto a muscle model, with QA metrics",
        description="Fits the model's mimic sites to SMPL joints (per-segment scaled) by inverse kinematics per "
                    "frame, resampled to the control rate, feet on the floor. Writes one motion .npz per input "
                    "(same relative path) and OUT/summary.json (rmse_m, joint_limit_violation_pct, tendon_jump_pct, "
                    "floor_penetration_m, seconds_per_frame, status per clip, and the aggregate). Bad files are "
                    "reported and skipped; existing outputs are kept, so a run resumes. Exit status 1 if any "
                    "file failed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("input", help="an AMASS .npz file or a directory searched recursively")
    r.add_argument("--model", type=_model, required=True, help="embodiment name (bimanual, myofullbody; arm26: planar, sagittal motion only)")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--smpl-model-dir", default=None,
                   help="directory with licensed SMPL/SMPL-H/SMPL-X model files; without it a built-in mean-shape "
                        "skeleton is used and betas are ignored")
    r.add_argument("--jobs", type=_positive(int), default=1, help="worker processes")
    r.add_argument("--fps", type=_positive(float), default=None, help="output frame rate (default: control rate)")
    r.add_argument("--no-fingers", action="store_true", help="retarget onto the model without finger joints")
    r.set_defaults(func=cmd_retarget)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command_line = "mmimic " + " ".join(shlex.quote(a) for a in argv)
    args.argv = argv
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
