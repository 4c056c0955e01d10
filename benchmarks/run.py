"""Side-by-side benchmarks: nlp_transfer against plain transformers (Trainer, pipeline).

    python benchmarks/run.py --quick                  # a few minutes on 2 CPU cores
    python benchmarks/run.py                          # full mode (bigger subsets, more epochs)
    python benchmarks/run.py --quick --cases full,predict --train-size 500

Every measured run is its own process (this script again, with ``--case X --side ours|theirs``),
so peak resident memory is per run and no run inherits another's caches or warm state. Results go
to ``benchmarks/results/<YYYY-MM-DD>-<machine>.{json,md,png}``. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CASES = ("full", "bf16", "fp16", "frozen", "lora", "distill", "predict", "vision", "distill-big")
DEFAULT_CASES = CASES[:-1]  # distill-big trains a 110M-parameter teacher: asked for by name
MODES = {  # scale knobs per mode; any flag given on the command line wins
    "quick": {"train_size": 2000, "eval_size": 300, "epochs": 2.0, "predict_size": 0},
    "full": {"train_size": 4000, "eval_size": 0, "epochs": 2.0, "predict_size": 0},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small subsets, 2 epochs (about 20 minutes on 2 cores)")
    p.add_argument("--cases", default=",".join(DEFAULT_CASES), help=f"comma-separated subset of: {', '.join(CASES)}")
    scale = p.add_argument_group("scale (defaults depend on --quick)")
    scale.add_argument("--train-size", type=int, help="training rows, first N after a seeded shuffle (0 = all 67,349)")
    scale.add_argument("--eval-size", type=int, help="validation rows, same rule (0 = all 872)")
    scale.add_argument("--epochs", type=float, help="epochs of full fine-tuning (and lora / distill)")
    scale.add_argument("--batch-size", type=int, default=32)
    scale.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads in every run (both sides)")
    hp = p.add_argument_group("hyperparameters (identical on both sides)")
    hp.add_argument("--lr", type=float, default=5e-5)
    hp.add_argument("--weight-decay", type=float, default=0.01)
    hp.add_argument("--warmup-ratio", type=float, default=0.06)
    hp.add_argument("--max-length", type=int, default=128)
    hp.add_argument("--seed", type=int, default=42)
    hp.add_argument("--frozen-epochs", type=float, default=5.0)
    hp.add_argument("--frozen-lr", type=float, default=2e-3, help="head-only training (recipes/sst2/frozen.yaml uses 2e-3)")
    hp.add_argument("--lora-lr", type=float, help="default: train.lr of recipes/sst2/lora.yaml (5e-4 if absent)")
    hp.add_argument("--student-layers", type=int, default=3,
                    help="distill: student depth (strategy.student_num_layers, evenly spaced teacher layers)")
    hp.add_argument("--distill-option", action="append", metavar="KEY=VALUE",
                    help="extra strategy option for the distill runs (repeatable), e.g. temperature=2")
    hp.add_argument("--no-frozen-mean", action="store_true", help="skip the extra frozen run with mean pooling")
    hp.add_argument("--vision-epochs", type=float, default=10.0, help="vision: epochs of the digits ViT (recipes/digits/source.yaml)")
    hp.add_argument("--vision-batch-size", type=int, default=32)
    hp.add_argument("--vision-lr", type=float, default=1e-3)
    pr = p.add_argument_group("prediction and hardware")
    pr.add_argument("--predict-batch-size", type=int, default=64)
    pr.add_argument("--predict-size", type=int, help="first N validation sentences (file order) to predict (0 = all 872)")
    pr.add_argument("--repeats", type=int, default=3, help="timed predict repeats (median), after one warm-up call")
    pr.add_argument("--matmul-size", type=int, help="n of the n x n matmuls that measure the peak (default: 2048 on a CPU, 8192 on a GPU)")
    pr.add_argument("--matmul-repeats", type=int, default=20)
    out = p.add_argument_group("output")
    out.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "sst2")
    out.add_argument("--out-dir", type=Path, default=HERE / "results")
    out.add_argument("--machine", default=None, help="machine name in the file names (default: the host name)")
    out.add_argument("--work-dir", type=Path, help="where runs write models and logs (default: a temp dir, deleted)")
    out.add_argument("--keep-work", action="store_true", help="keep the work dir (models, per-run logs)")
    child = p.add_argument_group("one measured run (used by the harness itself)")
    child.add_argument("--case", choices=(*DEFAULT_CASES, "machine", "big-full", "big-distill"))
    child.add_argument("--side", choices=("ours", "theirs"), default="ours")
    child.add_argument("--run-dir", type=Path)
    child.add_argument("--result", type=Path)
    child.add_argument("--model-dir", type=Path)
    child.add_argument("--teacher-dir", type=Path)
    child.add_argument("--pooling", choices=("cls", "mean"), default="cls")
    child.add_argument("--cache-teacher", choices=("true", "false"), default="true")
    child.add_argument("--run-optimize", choices=("true", "false"), default="false")
    sys.path.insert(0, str(HERE))
    import distill_big

    distill_big.add_arguments(p)
    args = p.parse_args(argv)
    mode = "quick" if args.quick else "full"
    for key, value in MODES[mode].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.mode = mode
    return args


# ----------------------------------------------------------------------------- child side

def child_main(args) -> int:
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    sys.path.insert(0, str(HERE))
    import sides

    args.run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix=f"bench-{args.case}-"))
    result = sides.run_child(args)
    text = json.dumps(result, indent=1, default=str)
    if args.result:
        args.result.write_text(text)
    else:
        print(text)
    return 0


# ----------------------------------------------------------------------------- orchestration

class Harness:
    """Runs the measured processes back to back and keeps their results."""

    def __init__(self, args):
        self.args = args
        self.work = args.work_dir or Path(tempfile.mkdtemp(prefix="nlp-transfer-bench-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.runs: dict[str, dict] = {}

    def run(self, run_id: str, case: str, side: str = "ours", env_overrides: dict | None = None, **extra) -> dict | None:
        """One measured run in a fresh process with fresh caches (unless ``env_overrides`` names shared ones);
        None (and an error entry) if it failed."""
        run_dir = self.work / run_id
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        result_file = run_dir / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--case", case, "--side", side,
               "--run-dir", str(run_dir), "--result", str(result_file), *self._knob_flags()]
        for key, value in extra.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               # fresh, empty caches per run: nothing computed by an earlier run is reused
               "HF_DATASETS_CACHE": str(run_dir / "hf_datasets_cache"), "NLP_TRANSFER_CACHE": str(run_dir / "nlp_transfer_cache"),
               **(env_overrides or {})}
        print(f"[{time.strftime('%H:%M:%S')}] {run_id}: {case} / {side} ...", flush=True)
        started = time.perf_counter()
        with open(run_dir / "log.txt", "w") as log:
            proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        seconds = time.perf_counter() - started
        if proc.returncode != 0 or not result_file.is_file():
            tail = (run_dir / "log.txt").read_text(errors="replace")[-3000:]
            self.runs[run_id] = {"case": case, "side": side, "error": f"exit code {proc.returncode}", "log_tail": tail,
                                 "command": " ".join(cmd)}
            print(f"    FAILED (exit {proc.returncode}); last lines:\n{tail[-1500:]}", flush=True)
            return None
        result = json.loads(result_file.read_text())
        result.update(case=case, side=side, process_seconds=round(seconds, 2),
                      command=" ".join(cmd).replace(str(self.work), "$WORK"))
        self.runs[run_id] = result
        print(f"    done in {seconds:.0f}s (peak RSS {result.get('peak_rss_mib')} MiB)", flush=True)
        return result

    def _knob_flags(self) -> list[str]:
        a = self.args
        flags = ["--train-size", a.train_size, "--eval-size", a.eval_size, "--epochs", a.epochs, "--batch-size", a.batch_size,
                 "--threads", a.threads, "--lr", a.lr, "--weight-decay", a.weight_decay, "--warmup-ratio", a.warmup_ratio,
                 "--max-length", a.max_length, "--seed", a.seed, "--frozen-epochs", a.frozen_epochs, "--frozen-lr", a.frozen_lr,
                 "--student-layers", a.student_layers, "--predict-batch-size", a.predict_batch_size,
                 "--predict-size", a.predict_size, "--repeats", a.repeats,
                 "--matmul-repeats", a.matmul_repeats, "--data-dir", a.data_dir, "--vision-epochs", a.vision_epochs,
                 "--vision-batch-size", a.vision_batch_size, "--vision-lr", a.vision_lr]
        if a.lora_lr:
            flags += ["--lora-lr", a.lora_lr]
        if a.matmul_size:
            flags += ["--matmul-size", a.matmul_size]
        for item in a.distill_option or []:
            flags += ["--distill-option", item]
        return [str(f) for f in flags]


def orchestrate(args) -> int:
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        print(f"--cases: unknown {unknown}; choose from {', '.join(CASES)}", file=sys.stderr)
        return 2
    if not (args.data_dir / "train.tsv").is_file():
        print(f"--data-dir: no train.tsv in {args.data_dir}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))
    import report

    started = time.perf_counter()
    h = Harness(args)
    skipped: dict[str, str] = {}
    machine = h.run("machine", "machine") or {}
    strategies = machine.get("strategies", [])
    for case in ("lora", "distill"):
        if case in cases and strategies and case not in strategies:
            skipped[case] = f"strategy '{case}' is not registered in nlp_transfer.strategies.registry.STRATEGIES"
    if "fp16" in cases and (machine.get("matmul") or {}).get("device") != "cuda":
        skipped["fp16"] = "fp16 mixed precision needs a CUDA GPU (on a CPU autocast would run fp32); none here"
    active = [c for c in cases if c not in skipped]
    # full/ours is also the model that predict uses, the teacher of distill and the reference of lora
    if active and (set(active) & {"full", "bf16", "fp16", "predict", "lora", "distill"}):
        h.run("full-ours", "full", "ours")
    if "full" in active:
        h.run("full-theirs", "full", "theirs")
    if "bf16" in active:
        h.run("bf16-ours", "bf16", "ours")
        h.run("bf16-theirs", "bf16", "theirs")
    if "fp16" in active:
        h.run("fp16-ours", "fp16", "ours")
        h.run("fp16-theirs", "fp16", "theirs")
    if "frozen" in active:
        h.run("frozen-ours", "frozen", "ours", pooling="cls")
        h.run("frozen-theirs", "frozen", "theirs")
        if not args.no_frozen_mean:
            h.run("frozen-ours-mean", "frozen", "ours", pooling="mean")
    model_dir = (h.runs.get("full-ours") or {}).get("output_dir")
    if "lora" in active:
        h.run("lora-ours", "lora", "ours")
    if "distill" in active:
        if model_dir:
            cached = h.run("distill-ours-cache", "distill", "ours", teacher_dir=model_dir, cache_teacher="true")
            uncached = h.run("distill-ours-nocache", "distill", "ours", teacher_dir=model_dir, cache_teacher="false")
            student = (cached or uncached or {}).get("output_dir")
            if student:
                h.run("distill-predict-teacher", "predict", "ours", model_dir=model_dir)
                h.run("distill-predict-student", "predict", "ours", model_dir=student)
        else:
            skipped["distill"] = "no teacher: the full/ours run failed"
    if "distill-big" in active:
        import distill_big

        distill_big.orchestrate(h, args)
    if "predict" in active:
        if model_dir:
            h.run("predict-ours", "predict", "ours", model_dir=model_dir, run_optimize="true")
            h.run("predict-theirs", "predict", "theirs", model_dir=model_dir)
        else:
            skipped["predict"] = "no trained model: the full/ours run failed"
    if "vision" in active:
        h.run("vision-ours", "vision", "ours")
        h.run("vision-theirs", "vision", "theirs")
    total = time.perf_counter() - started

    machine_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", args.machine or socket.gethostname()) or "machine"
    stem = f"{dt.date.today().isoformat()}-{machine_name}"
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
              if k not in ("case", "side", "run_dir", "result", "model_dir", "teacher_dir", "pooling", "cache_teacher", "work_dir",
                           "run_optimize")}
    results = report.build_results(h.runs, machine, config, cases, skipped, total_seconds=round(total, 1),
                                   command=" ".join([Path(sys.executable).name, *sys.argv]))
    paths = report.write_all(results, args.out_dir, stem)
    print(f"\nWrote {', '.join(str(p) for p in paths)}  ({total / 60:.1f} min)")
    print(report.markdown_table(results))
    if args.keep_work:
        print(f"Work dir kept: {h.work}")
    elif args.work_dir is None:
        shutil.rmtree(h.work, ignore_errors=True)
    return 1 if any("error" in r for r in h.runs.values()) else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    return child_main(args) if args.case else orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
