"""The ``distill-big`` case: a big teacher distilled into a small student with another tokenizer.

    python benchmarks/run.py --cases distill-big --threads 2 --big-train-size 8000 --big-unlabeled-size 20000

Runs, each its own process (``run.py --case big-full|big-distill|predict ...``):

1. ``big-teacher``: all-mpnet-base-v2 (12 layers, hidden 768) fine-tuned (strategy ``full``) on
   ``--big-train-size`` SST-2 rows for ``--big-epochs``; scored on all 872 validation rows.
2. ``big-minilm``: all-MiniLM-L6-v2 fine-tuned alone on the same rows, epochs and lr as the students.
3. ``big-distill``: MiniLM distilled from the teacher on the same labelled rows (cross-tokenizer: MPNet's
   tokenizer and MiniLM's BERT tokenizer differ).
4. ``big-distill-unlabeled``: the same plus ``--big-unlabeled-size`` other SST-2 training sentences
   without their labels (the rows after the labelled ones in the same seeded shuffle, so disjoint rows).
   It shares 3.'s teacher cache, so the teacher runs only over the unlabelled rows here.
5. ``big-predict-teacher`` / ``big-predict-student``: ``Predictor`` throughput on all 872 validation
   sentences, each in its own process (the ``predict`` case).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

TEACHER = "sentence-transformers/all-mpnet-base-v2"
STUDENT = "sentence-transformers/all-MiniLM-L6-v2"
LABELS = ["negative", "positive"]


def add_arguments(parser) -> None:
    """The ``distill-big`` knobs (run.py's parser)."""
    big = parser.add_argument_group("distill-big (a big teacher into a small student; --cases distill-big)")
    big.add_argument("--big-train-size", type=int, default=8000, help="labelled SST-2 rows (first N after a seeded shuffle)")
    big.add_argument("--big-unlabeled-size", type=int, default=20000, help="extra SST-2 sentences without labels")
    big.add_argument("--big-epochs", type=float, default=2.0)
    big.add_argument("--big-teacher", default=TEACHER)
    big.add_argument("--big-student", default=STUDENT)
    big.add_argument("--big-teacher-lr", type=float, default=3e-5)
    big.add_argument("--big-student-lr", type=float, default=1e-4, help="MiniLM alone and both distilled students")
    big.add_argument("--big-precision", default="bf16", choices=["no", "bf16"], help="train.mixed_precision of every run")
    big.add_argument("--big-eval-size", type=int, default=0, help="validation rows scored and predicted (0 = all 872; "
                                                                   "smaller only for a smoke test)")
    child = parser.add_argument_group("one distill-big run (used by the harness itself)")
    child.add_argument("--big-model", help="big-full: the model to fine-tune")
    child.add_argument("--big-lr", type=float, help="big-full / big-distill: learning rate")
    child.add_argument("--unlabeled", type=Path, help="big-distill: data.files.unlabeled")


# ----------------------------------------------------------------------------- orchestration

def orchestrate(h, args) -> None:
    """All distill-big runs, back to back (``h``: run.py's Harness)."""
    unlabeled = write_unlabeled(args, h.work / "sst2-unlabeled.tsv")
    common = {"big_train_size": args.big_train_size, "big_epochs": args.big_epochs, "big_precision": args.big_precision,
              "big_eval_size": args.big_eval_size}
    teacher = h.run("big-teacher", "big-full", big_model=args.big_teacher, big_lr=args.big_teacher_lr, **common)
    h.run("big-minilm", "big-full", big_model=args.big_student, big_lr=args.big_student_lr, **common)
    if not teacher:
        return
    students = {}
    # one teacher cache for both students: the second run reads the labelled rows' teacher outputs from the first
    shared = {"NLP_TRANSFER_CACHE": str(h.work / "big-teacher-outputs")}
    for run_id, extra in (("big-distill", {}), ("big-distill-unlabeled", {"unlabeled": unlabeled})):
        students[run_id] = h.run(run_id, "big-distill", env_overrides=shared, teacher_dir=teacher["output_dir"],
                                 big_model=args.big_student, big_lr=args.big_student_lr, **common, **extra)
    h.run("big-predict-teacher", "predict", model_dir=teacher["output_dir"], predict_size=args.big_eval_size)
    student = students.get("big-distill-unlabeled") or students.get("big-distill")
    if student:
        h.run("big-predict-student", "predict", model_dir=student["output_dir"], predict_size=args.big_eval_size)


def write_unlabeled(args, path: Path) -> Path:
    """SST-2 training sentences after the labelled ones in the same seeded shuffle, without labels."""
    from datasets import load_dataset

    train = load_dataset("csv", data_files={"train": str(args.data_dir / "train.tsv")}, split="train", delimiter="\t", quoting=3)
    rows = train.shuffle(seed=args.seed).select(range(args.big_train_size, args.big_train_size + args.big_unlabeled_size))
    # SST-2 sentences hold no tab or newline (shared/data/README.md): written as they are, read back with QUOTE_NONE
    path.write_text("sentence\n" + "".join(f"{s}\n" for s in rows["sentence"]), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- child side

def _recipe(args, model: str | None, strategy: dict, out_dir: Path, unlabeled: Path | None = None) -> dict:
    files = {"train": str(args.data_dir / "train.tsv"), "validation": str(args.data_dir / "validation.tsv")}
    if unlabeled:
        files["unlabeled"] = str(unlabeled)
    return {
        "model": {"name": model, "max_length": args.max_length},
        "task": {"type": "text-classification", "text": "sentence", "label": "label", "labels": LABELS},
        "data": {"files": files, "limit": {"train": args.big_train_size, **({"validation": args.big_eval_size} if args.big_eval_size else {})}},
        "strategy": strategy,
        "train": {"epochs": args.big_epochs, "batch_size": args.batch_size, "eval_batch_size": 2 * args.batch_size,
                  "lr": args.big_lr, "weight_decay": args.weight_decay, "warmup_ratio": args.warmup_ratio, "seed": args.seed,
                  "mixed_precision": args.big_precision, "eval_every": 0, "metrics": ["accuracy"]},
        "output": {"dir": str(out_dir), "overwrite": True},
    }


def run(args) -> dict:
    """One distill-big run in this process."""
    import sides

    out_dir = args.run_dir / "model"
    if args.case == "big-full":
        recipe = _recipe(args, args.big_model, {"name": "full"}, out_dir)
    elif args.case == "big-distill":
        strategy = {**sides._recipe_section("distill", "strategy"), "name": "distill", "teacher": str(args.teacher_dir)}
        for key in ("student_layers", "student_num_layers"):  # the student is model.name, not a copy of teacher layers
            strategy.pop(key, None)
        recipe = _recipe(args, args.big_model, strategy, out_dir, args.unlabeled)
    else:
        raise SystemExit(f"--case {args.case}: not a distill-big run")
    import nlp_transfer

    t0, c0 = time.perf_counter(), sides.cpu_seconds()
    out = nlp_transfer.train(recipe)
    wall, cpu = time.perf_counter() - t0, sides.cpu_seconds() - c0
    m = out.metrics
    return {"wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "peak_rss_mib": sides.peak_rss_mib(),
            "torch_threads": torch.get_num_threads(), "train_seconds": m["train"]["seconds"],
            "train_samples_per_second": m["train"]["samples_per_second"], "accuracy_selected": m["validation"].get("accuracy"),
            "parameters": m["parameters"], "rows": m["data"], "output_dir": str(out.output_dir), "metrics": m,
            "recipe": recipe}


# ----------------------------------------------------------------------------- report

def rows(runs: dict) -> list[dict]:
    """The comparisons of the distill-big runs (report.py's row format)."""
    from report import _div, _get, _pct, _points, _row

    teacher, alone = _get(runs, "big-teacher"), _get(runs, "big-minilm")
    plain, extra = _get(runs, "big-distill"), _get(runs, "big-distill-unlabeled")
    out = []
    acc_t, acc_a = (_pct(r["accuracy_selected"]) if r else None for r in (teacher, alone))
    for label, student in (("distilled", plain), ("distilled + unlabelled", extra)):
        if not student:
            continue
        acc_s = _pct(student["accuracy_selected"])
        rows_note = f"{student['rows'].get('train', 0):,} training rows ({student['metrics']['distill']['rows']})"
        if alone:
            out.append(_row("distill-big", f"MiniLM {label} vs MiniLM fine-tuned alone (same labelled rows)", acc_s, acc_a,
                            unit="%", ratio=_points(acc_s, acc_a), ratio_label="points", target="> alone",
                            met=bool(acc_s is not None and acc_a is not None and acc_s > acc_a), note=rows_note))
        if teacher:
            retention = _div(acc_s, acc_t)
            out.append(_row("distill-big", f"MiniLM {label} vs teacher all-mpnet-base-v2 (retention)", acc_s, acc_t, unit="%",
                            ratio=retention, ratio_label="student/teacher", target=">= 0.97",
                            met=bool(retention and retention >= 0.97)))
    if teacher and alone:
        out.append(_row("distill-big", "MiniLM alone vs teacher (retention without distillation)", acc_a, acc_t, unit="%",
                        ratio=_div(acc_a, acc_t), ratio_label="alone/teacher"))
        pt, ps = teacher["parameters"]["total"], alone["parameters"]["total"]
        out.append(_row("distill-big", "parameters, teacher vs student", pt, ps, ratio=_div(pt, ps), ratio_label="teacher/student"))
    fast_t, fast_s = _get(runs, "big-predict-teacher"), _get(runs, "big-predict-student")
    if fast_t and fast_s:
        for key, label in (("reused", "float32"), ("reused_bf16", "bfloat16")):
            s, t = fast_s[key]["sentences_per_second"], fast_t[key]["sentences_per_second"]
            speedup = _div(s, t)
            out.append(_row("distill-big", f"inference speed, student vs teacher (Predictor built once, {label}, separate "
                            "processes)", s, t, unit="sentences/s", ratio=speedup, ratio_label="student/teacher",
                            target=">= 4x" if key == "reused" else "", met=bool(speedup and speedup >= 4) if key == "reused" else None,
                            note=f"all {fast_s[key]['sentences']} validation sentences, batch {fast_s['batch_size']}"))
    for run_id, label in (("big-teacher", "teacher"), ("big-distill", "MiniLM distilled"),
                          ("big-distill-unlabeled", "MiniLM distilled + unlabelled")):
        r = _get(runs, run_id)
        if r and alone:
            teacher_pass = ((r["metrics"].get("distill") or {}).get("teacher_cache") or {}).get("teacher_seconds")
            note = (f"{r['train_samples_per_second']} vs {alone['train_samples_per_second']} training samples/s"
                    + (f"; teacher pass {teacher_pass} s" if teacher_pass else ""))
            out.append(_row("distill-big", f"wall time (whole run), {label} vs MiniLM alone", r["wall_seconds"],
                            alone["wall_seconds"], unit="s", ratio=_div(r["wall_seconds"], alone["wall_seconds"]),
                            ratio_label="run/alone", note=note))
    return out
