"""One measured run per process: our side (nlp_transfer) or theirs (plain transformers).

``run.py --case X --side ours|theirs ...`` lands here. Each function sets the thread count,
does its work, and returns a dict that ``run.py`` writes as the run's result JSON. Only the
work inside the timed region is timed; imports happen before it on both sides. Checks that
are not part of the work (hashes of the rows used, token counts) run after it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
LABELS = ["negative", "positive"]
RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "sst2"
TINY_VIT = Path(__file__).resolve().parents[1] / "recipes" / "digits" / "tiny-vit"


# ----------------------------------------------------------------------------- shared helpers

def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (less disturbed than wall time on a busy machine)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _model_path() -> str:
    from nlp_transfer.models.files import resolve_model_path

    return resolve_model_path(MODEL)


def _rows_hash(sentences, labels) -> str:
    digest = hashlib.sha256()
    for s, y in zip(sentences, labels):
        digest.update(f"{s}\t{y}\n".encode())
    return digest.hexdigest()[:16]


def _token_stats(lengths) -> dict:
    lengths = np.asarray(lengths, dtype=np.int64)
    return {"rows": int(len(lengths)), "tokens": int(lengths.sum()), "tokens_squared": int((lengths ** 2).sum()),
            "max_length_seen": int(lengths.max()) if len(lengths) else 0}


def _limit(ds, n: int, seed: int):
    """Exactly what a recipe's ``data.limit.<split>`` does: the first n rows after a seeded shuffle."""
    if n and n < len(ds):
        return ds.shuffle(seed=seed).select(range(n)).flatten_indices()
    return ds


def _recipe_section(name: str, section: str) -> dict:
    """A section of a bundled recipe (recipes/sst2/<name>.yaml), or {} when the file is not there."""
    path = RECIPES / f"{name}.yaml"
    if not path.is_file():
        return {}
    return dict((yaml.safe_load(path.read_text()) or {}).get(section) or {})


# ----------------------------------------------------------------------------- machine

def matmul_seconds(n: int, repeats: int, dtype=torch.float32, device: str = "cpu") -> list[float]:
    """Seconds of each of ``repeats`` n x n matmuls in ``dtype`` on ``device``, after 3 warm-ups (2 n^3 FLOPs each)."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        torch.matmul(a, b)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        sync()
        times.append(time.perf_counter() - t0)
    return times


def training_device() -> str:
    """Where both sides train: accelerate and Trainer take the GPU when there is one, as does Predictor / pipeline()."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def matmul_peaks(n: int | None, repeats: int) -> dict:
    """The training device's matmul peaks (GFLOP/s, best of ``repeats``): fp32 (on a GPU without TF32, as both
    sides train in fp32), bf16, and on a GPU fp16 and TF32 too. Default size: 2048 on a CPU, 8192 on a GPU."""
    device = training_device()
    n = n or (8192 if device == "cuda" else 2048)
    flops = 2 * n ** 3
    dtypes = {"peak_gflops": torch.float32, "bf16_peak_gflops": torch.bfloat16}
    if device == "cuda":
        dtypes["fp16_peak_gflops"] = torch.float16
    peaks = {"device": device, "size": n, "repeats": repeats}
    for key, dtype in dtypes.items():
        times = matmul_seconds(n, repeats, dtype, device)
        peaks[key] = round(flops / min(times) / 1e9, 2)
        if key == "peak_gflops":
            peaks["median_gflops"] = round(flops / statistics.median(times) / 1e9, 2)
    if device == "cuda":
        tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            peaks["tf32_peak_gflops"] = round(flops / min(matmul_seconds(n, repeats, torch.float32, device)) / 1e9, 2)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = tf32
    return peaks


def _gpu() -> dict | None:
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "capability": f"{props.major}.{props.minor}", "memory_gib": round(props.total_memory / 2 ** 30, 1),
            "multiprocessors": props.multi_processor_count, "cuda": torch.version.cuda, "count": torch.cuda.device_count()}


def run_machine(args) -> dict:
    """The training device's matmul peaks with the benchmark's thread count, versions, and the model's shape."""
    import platform

    import transformers
    from transformers import AutoModelForSequenceClassification

    from nlp_transfer.strategies.registry import STRATEGIES

    model = AutoModelForSequenceClassification.from_pretrained(_model_path(), num_labels=2)
    params = dict(model.named_parameters())
    return {
        "peak_rss_mib": peak_rss_mib(),
        "matmul": matmul_peaks(args.matmul_size, args.matmul_repeats), "gpu": _gpu(),
        "cpu_model": _cpu_model(), "simd_flags": _simd_flags(), "logical_cpus": __import__("os").cpu_count(), "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "datasets": __import__("datasets").__version__, "accelerate": __import__("accelerate").__version__,
        "peft": __import__("peft").__version__, "nlp_transfer": __import__("nlp_transfer").__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "memory_gib": round(__import__("psutil").virtual_memory().total / 2 ** 30, 1) if _has("psutil") else None,
        "strategies": sorted(STRATEGIES),
        "model": {"name": MODEL, "path": _model_path(), "layers": model.config.num_hidden_layers,
                  "hidden": model.config.hidden_size, "total_params": sum(p.numel() for p in params.values()),
                  "non_embedding_params": sum(p.numel() for name, p in params.items() if ".embeddings." not in name),
                  "last_layer_first_token_params": _last_layer_first_token_params(params, model.config.num_hidden_layers)},
    }


def _last_layer_first_token_params(params: dict, layers: int) -> int:
    """The last layer's parameters that a first-token-only last layer applies at position 0 alone (all but the keys'
    and values' projections, which still see every position)."""
    last = f".encoder.layer.{layers - 1}."
    return sum(p.numel() for name, p in params.items()
               if last in name and ".attention.self.key." not in name and ".attention.self.value." not in name)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def _simd_flags() -> list[str]:
    """The vector-instruction flags /proc/cpuinfo lists (avx2, avx512f, amx_tile, ...)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    return []


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ----------------------------------------------------------------------------- ours

def _our_recipe(args, strategy: dict, out_dir: Path, pooling: str = "cls", **train) -> dict:
    """Our side, like for like with Trainer's: the native (cls) head unless the case says otherwise, one learning rate."""
    limit = {k: v for k, v in (("train", args.train_size), ("validation", args.eval_size)) if v}
    train = {"lr": args.lr, **train}
    return {
        "model": {"name": MODEL, "max_length": args.max_length, "pooling": pooling},
        "task": {"type": "text-classification", "text": "sentence", "label": "label", "labels": LABELS},
        "data": {"files": {"train": str(args.data_dir / "train.tsv"), "validation": str(args.data_dir / "validation.tsv")},
                 "limit": limit},
        "strategy": strategy,
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "eval_batch_size": 2 * args.batch_size,
                  "weight_decay": args.weight_decay, "warmup_ratio": args.warmup_ratio, "seed": args.seed,
                  "eval_every": 0, "metrics": ["accuracy"], "head_lr": train["lr"],
                  # fp32 unless the case says otherwise (train.mixed_precision's default, auto, picks bf16 on bf16 CPUs)
                  "mixed_precision": "no", **train},
        "output": {"dir": str(out_dir), "overwrite": True},
    }


def _train_ours(args, recipe: dict, data_check: bool = True) -> dict:
    import nlp_transfer

    train = nlp_transfer.train  # imports torch, transformers and the runner now, outside the timed call (imports excluded)
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = train(recipe)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    rss = peak_rss_mib()
    m = out.metrics
    log = [json.loads(line) for line in (out.output_dir / "train_log.jsonl").read_text().splitlines() if line.strip()]
    evals = [r["validation"] for r in log if "validation" in r]
    return {
        "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "peak_rss_mib": rss,
        "torch_threads": torch.get_num_threads(), "train_seconds": m["train"]["seconds"], "train_samples_per_second": m["train"]["samples_per_second"],
        "accuracy_selected": m["validation"].get("accuracy"),
        "accuracy_last_epoch": evals[-1].get("accuracy") if evals else None,
        "accuracy_per_eval": [e.get("accuracy") for e in evals],
        "parameters": m["parameters"], "output_dir": str(out.output_dir), "metrics": m,
        "file_bytes": {f.name: f.stat().st_size for f in out.output_dir.glob("*.safetensors")},
        "data_check": _our_data_check(recipe) if data_check else None,
        "mixed_precision": m.get("mixed_precision"),
    }


def _our_data_check(recipe: dict) -> dict:
    """The rows the library actually used (hash) and their token counts, computed after the timed run."""
    from nlp_transfer import load_recipe
    from nlp_transfer.data.files import load_splits
    from transformers import AutoTokenizer

    r = load_recipe(recipe)
    splits = load_splits(r.data, r.train.seed)
    tokenizer = AutoTokenizer.from_pretrained(_model_path())
    train = splits["train"]
    lengths = [len(ids) for ids in tokenizer(list(train["sentence"]), truncation=True, max_length=r.model.max_length)["input_ids"]]
    return {"train_hash": _rows_hash(train["sentence"], train["label"]),
            "validation_hash": _rows_hash(splits["validation"]["sentence"], splits["validation"]["label"]),
            "train_tokens": _token_stats(lengths)}


def run_ours(args) -> dict:
    out_dir = args.run_dir / "model"
    if args.case == "full":
        return _train_ours(args, _our_recipe(args, {"name": "full"}, out_dir))
    if args.case in ("bf16", "fp16"):
        return _train_ours(args, _our_recipe(args, {"name": "full"}, out_dir, mixed_precision=args.case))
    if args.case == "vision":
        return _train_ours(args, _vision_recipe(args, out_dir), data_check=False)
    if args.case == "frozen":
        recipe = _our_recipe(args, {"name": "frozen", "cache_features": True}, out_dir, pooling=args.pooling,
                             epochs=args.frozen_epochs, lr=args.frozen_lr)
        result = _train_ours(args, recipe)
        result["feature_cache_hits"] = result["metrics"].get("feature_cache_hits")
        return result
    if args.case == "lora":
        return _run_lora(args, out_dir)
    if args.case == "distill":
        return _run_distill(args, out_dir)
    if args.case == "predict":
        return _predict_ours(args)
    if args.case.startswith("big-"):
        import distill_big

        return distill_big.run(args)
    raise SystemExit(f"--case {args.case} has no 'ours' side")


def _recipe_train_knobs(name: str, default_lr: float) -> dict:
    """lr (and weight decay / warmup when the bundled recipe sets them) from recipes/sst2/<name>.yaml."""
    train = _recipe_section(name, "train")
    knobs = {"lr": float(train.get("lr", default_lr))}
    for key in ("weight_decay", "warmup_ratio"):
        if key in train:
            knobs[key] = float(train[key])
    return knobs


def _run_lora(args, out_dir: Path) -> dict:
    strategy = {**_recipe_section("lora", "strategy"), "name": "lora"}
    knobs = {**_recipe_train_knobs("lora", 5e-4), **({"lr": args.lora_lr} if args.lora_lr else {})}
    result = _train_ours(args, _our_recipe(args, strategy, out_dir, **knobs))
    adapter = Path(result["output_dir"]) / "adapter_model.safetensors"
    result["adapter_bytes"] = adapter.stat().st_size if adapter.is_file() else None
    result["recipe_strategy"], result["recipe_train"] = strategy, knobs
    return result


def distill_strategy(args) -> dict:
    """The distill strategy section: the bundled recipe's, with the teacher, the student depth and the
    teacher cache set from the benchmark's options (names as in nlp_transfer/strategies/distill.py)."""
    from nlp_transfer.strategies.registry import STRATEGIES

    fields = {f.name for f in dataclasses.fields(STRATEGIES["distill"].Options)}
    strategy = {**_recipe_section("distill", "strategy"), "name": "distill"}
    if "cache_teacher" in fields:
        strategy["cache_teacher"] = args.cache_teacher == "true"
    if "teacher" in fields and args.teacher_dir:
        strategy["teacher"] = str(args.teacher_dir)
    if "student_num_layers" in fields:  # evenly spaced layers of the teacher, first and last included
        strategy.pop("student_layers", None)
        strategy["student_num_layers"] = args.student_layers
    for item in args.distill_option or []:
        key, _, value = item.partition("=")
        strategy[key.strip()] = yaml.safe_load(value)
    return strategy


def _run_distill(args, out_dir: Path) -> dict:
    strategy = distill_strategy(args)
    knobs = _recipe_train_knobs("distill", args.lr)
    recipe = _our_recipe(args, strategy, out_dir, **knobs)
    # the student is built from the teacher and uses its tokenizer: model.name stays out (the strategy fills it in)
    recipe["model"].pop("name")
    result = _train_ours(args, recipe)
    result["strategy_metrics"] = result["metrics"].get("distill")
    result["recipe_strategy"], result["recipe_train"] = strategy, knobs
    return result


def _digits(args) -> Path:
    """The digits demo's image folders (digits 0-4: the source task), written before the timed region."""
    from nlp_transfer.data.digits import write_digits

    return write_digits(args.run_dir / "digits") / "source"


def _vision_recipe(args, out_dir: Path) -> dict:
    """recipes/digits/source.yaml (the tiny ViT from scratch on digits 0-4) with the benchmark's epochs and seed."""
    return {
        "model": {"name": str(TINY_VIT), "from_scratch": True},
        "task": {"type": "image-classification", "image": "image", "label": "label"},
        "data": {"source": "imagefolder", "dir": str(_digits(args))},
        "strategy": {"name": "full"},
        "train": {"epochs": args.vision_epochs, "batch_size": args.vision_batch_size, "eval_batch_size": 2 * args.vision_batch_size,
                  "lr": args.vision_lr, "weight_decay": args.weight_decay, "warmup_ratio": 0.1, "seed": args.seed,
                  "eval_every": 0, "metrics": ["accuracy"], "mixed_precision": "no"},
        "output": {"dir": str(out_dir), "overwrite": True},
    }


def _validation_texts(args, with_labels: bool = False):
    from datasets import load_dataset

    ds = load_dataset("csv", data_files={"validation": str(args.data_dir / "validation.tsv")}, split="validation",
                      delimiter="\t", quoting=3)
    n = args.predict_size or len(ds)
    texts = [str(t) for t in ds["sentence"]][:n]
    return (texts, [LABELS[int(y)] for y in ds["label"]][:n]) if with_labels else texts


def _timed_repeats(fn, repeats: int) -> tuple[list[float], object]:
    fn()  # warm-up, excluded
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def _predict_result(texts, times, labels) -> dict:
    median = statistics.median(times)
    return {"sentences": len(texts), "seconds": [round(t, 4) for t in times], "median_seconds": round(median, 4),
            "sentences_per_second": round(len(texts) / median, 2), "labels": labels}


def _predict_ours(args) -> dict:
    import nlp_transfer

    texts, gold = _validation_texts(args, with_labels=True)
    batch = args.predict_batch_size
    # variant="fp32": the saved weights (an optimized/ variant, when there is one, is measured on its own below)
    times, preds = _timed_repeats(lambda: nlp_transfer.predict(args.model_dir, texts, batch_size=batch, variant="fp32"),
                                  args.repeats)
    result = {"end_to_end": _predict_result(texts, times, [p["label"] for p in preds]), "gold": gold}
    for key, dtype in (("reused", None), ("reused_bf16", "bfloat16")):
        predictor = nlp_transfer.Predictor(args.model_dir, dtype=dtype, variant="fp32")
        times, preds = _timed_repeats(lambda: predictor(texts, batch_size=batch), args.repeats)
        result[key] = _predict_result(texts, times, [p["label"] for p in preds])
        result[key]["first_token_last_layer"] = _first_token(predictor.model)
    if args.run_optimize == "true":
        result["optimized"] = _optimized(args, texts, batch)
    result.update(peak_rss_mib=peak_rss_mib(), torch_threads=torch.get_num_threads(), model_dir=str(args.model_dir),
                  batch_size=args.predict_batch_size)
    return result


def _first_token(model) -> bool:
    from nlp_transfer.models.first_token import first_token_enabled

    return first_token_enabled(model)


def _optimized(args, texts: list[str], batch: int) -> dict:
    """`nlp_transfer.optimize` on a copy of the model (its recipe's validation rows), then its pick, timed like the others."""
    import shutil

    import nlp_transfer

    folder = shutil.copytree(args.model_dir, args.run_dir / "optimized-model")
    t0 = time.perf_counter()
    report = nlp_transfer.optimize(folder, batch_size=batch, repeats=args.repeats)
    seconds = time.perf_counter() - t0
    predictor = nlp_transfer.Predictor(folder)
    times, preds = _timed_repeats(lambda: predictor(texts, batch_size=batch), args.repeats)
    keep = ("status", "reason", "rows_per_second", "latency_ms", "label_agreement", "metric_delta_points", "within_tolerance")
    return {**_predict_result(texts, times, [p["label"] for p in preds]), "variant": predictor.variant,
            "optimize_seconds": round(seconds, 2), "selection": report["selected"], "rows": report["rows"],
            "variants": {name: {k: r[k] for k in keep if k in r} | {"metrics": r.get("metrics")}
                         for name, r in report["variants"].items()}}


# ----------------------------------------------------------------------------- theirs (plain transformers)

def _their_data(args, tokenizer):
    from datasets import load_dataset

    files = {"train": str(args.data_dir / "train.tsv"), "validation": str(args.data_dir / "validation.tsv")}
    raw = load_dataset("csv", data_files=files, delimiter="\t", quoting=3)
    train, validation = _limit(raw["train"], args.train_size, args.seed), _limit(raw["validation"], args.eval_size, args.seed)
    tokenize = lambda batch: tokenizer(batch["sentence"], truncation=True, max_length=args.max_length)  # noqa: E731
    return (train, validation, train.map(tokenize, batched=True, remove_columns=["sentence"]),
            validation.map(tokenize, batched=True, remove_columns=["sentence"]))


def _train_theirs(args, *, frozen: bool, precision: str = "no") -> dict:
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, set_seed)

    epochs = args.frozen_epochs if frozen else args.epochs
    lr = args.frozen_lr if frozen else args.lr
    t0, c0 = time.perf_counter(), cpu_seconds()
    set_seed(args.seed)
    path = _model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    train_raw, val_raw, train_ds, val_ds = _their_data(args, tokenizer)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=2, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    if frozen:
        # The encoder is frozen; the head (BERT's pooler + classifier) trains, exactly the parameters our frozen/cls trains.
        model.base_model.requires_grad_(False)
        pooler = getattr(model.base_model, "pooler", None)
        if pooler is not None:
            pooler.requires_grad_(True)
    training_args = TrainingArguments(
        output_dir=str(args.run_dir / "trainer"), num_train_epochs=epochs, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=2 * args.batch_size, learning_rate=lr, weight_decay=args.weight_decay,
        warmup_steps=args.warmup_ratio,  # transformers 5: a float below 1 is a ratio of the total steps
        seed=args.seed, eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none",
        bf16=precision == "bf16", fp16=precision == "fp16",
        use_cpu=precision == "bf16" and not torch.cuda.is_available(),  # Trainer's bf16 on a CPU: autocast, once use_cpu says so
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=train_ds,
                      data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
    t_train, c_train = time.perf_counter(), cpu_seconds()
    train_out = trainer.train()
    train_seconds, train_cpu = time.perf_counter() - t_train, cpu_seconds() - c_train
    prediction = trainer.predict(val_ds)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    rss = peak_rss_mib()
    accuracy = float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {
        "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "peak_rss_mib": rss,
        "torch_threads": torch.get_num_threads(), "train_seconds": round(train_seconds, 2),
        "train_cpu_seconds": round(train_cpu, 2),
        "train_samples_per_second": round(len(train_ds) * epochs / train_seconds, 2),
        "trainer_metrics": train_out.metrics, "accuracy_last_epoch": accuracy, "accuracy_selected": accuracy,
        "parameters": {"trainable": trainable, "total": total, "trainable_percent": round(100 * trainable / total, 4)},
        "optimizer": training_args.optim, "warmup_steps": training_args.get_warmup_steps(trainer.state.max_steps),
        "data_check": {"train_hash": _rows_hash(train_raw["sentence"], train_raw["label"]),
                       "validation_hash": _rows_hash(val_raw["sentence"], val_raw["label"]),
                       "train_tokens": _token_stats([len(ids) for ids in train_ds["input_ids"]])},
    }


def _predict_theirs(args) -> dict:
    from transformers import pipeline

    texts = _validation_texts(args)
    folder, batch = str(args.model_dir), args.predict_batch_size

    def end_to_end():
        return pipeline("text-classification", model=folder, batch_size=batch)(texts, truncation=True)

    times, preds = _timed_repeats(end_to_end, args.repeats)
    result = {"end_to_end": _predict_result(texts, times, [p["label"] for p in preds])}
    for key, dtype in (("reused", None), ("reused_bf16", torch.bfloat16)):
        classifier = pipeline("text-classification", model=folder, batch_size=batch, dtype=dtype)
        times, preds = _timed_repeats(lambda: classifier(texts, truncation=True), args.repeats)
        result[key] = _predict_result(texts, times, [p["label"] for p in preds])
    result.update(peak_rss_mib=peak_rss_mib(), torch_threads=torch.get_num_threads(), model_dir=folder, batch_size=batch)
    return result


def _train_theirs_vision(args) -> dict:
    """The same tiny ViT from scratch under Trainer: the same image processor, images, batch size, epochs and lr."""
    from datasets import load_dataset
    from transformers import (AutoConfig, AutoImageProcessor, AutoModelForImageClassification, DefaultDataCollator, Trainer,
                              TrainingArguments, set_seed)

    source = _digits(args)
    t0, c0 = time.perf_counter(), cpu_seconds()
    set_seed(args.seed)
    processor = AutoImageProcessor.from_pretrained(str(TINY_VIT))
    raw = load_dataset("imagefolder", data_dir=str(source))
    names = raw["train"].features["label"].names
    config = AutoConfig.from_pretrained(str(TINY_VIT), num_labels=len(names), id2label=dict(enumerate(names)),
                                        label2id={n: i for i, n in enumerate(names)})
    model = AutoModelForImageClassification.from_config(config)

    def preprocess(batch):
        return {"pixel_values": processor([image.convert("RGB") for image in batch["image"]])["pixel_values"],
                "labels": batch["label"]}

    train_ds, val_ds = (raw[split].map(preprocess, batched=True, remove_columns=["image", "label"]).with_format("torch")
                        for split in ("train", "validation"))
    training_args = TrainingArguments(
        output_dir=str(args.run_dir / "trainer"), num_train_epochs=args.vision_epochs,
        per_device_train_batch_size=args.vision_batch_size, per_device_eval_batch_size=2 * args.vision_batch_size,
        learning_rate=args.vision_lr, weight_decay=args.weight_decay, warmup_steps=0.1, seed=args.seed,
        eval_strategy="no", save_strategy="no", logging_strategy="no", report_to="none")
    trainer = Trainer(model=model, args=training_args, train_dataset=train_ds, data_collator=DefaultDataCollator())
    t_train = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t_train
    prediction = trainer.predict(val_ds)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    accuracy = float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())
    return {"wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "peak_rss_mib": peak_rss_mib(),
            "torch_threads": torch.get_num_threads(), "train_seconds": round(train_seconds, 2),
            "train_samples_per_second": round(len(train_ds) * args.vision_epochs / train_seconds, 2),
            "accuracy_last_epoch": accuracy, "accuracy_selected": accuracy, "rows": {"train": len(train_ds), "validation": len(val_ds)}}


def run_theirs(args) -> dict:
    if args.case in ("full", "frozen", "bf16", "fp16"):
        return _train_theirs(args, frozen=args.case == "frozen", precision=args.case if args.case in ("bf16", "fp16") else "no")
    if args.case == "vision":
        return _train_theirs_vision(args)
    if args.case == "predict":
        return _predict_theirs(args)
    raise SystemExit(f"--case {args.case} has no 'theirs' side")


def run_child(args) -> dict:
    """Entry point of one measured run."""
    import os

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    if args.case == "machine":
        result = run_machine(args)
    else:
        result = run_ours(args) if args.side == "ours" else run_theirs(args)
    if torch.cuda.is_available():
        result["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
        result["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32  # what fp32 training ran with (both sides leave it)
    # 1-minute load average of the machine (all processes, this one included): a busy machine shows here
    result["load_average"] = {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)}
    return result
