"""The quick benchmark's accuracy rows of `lora` and `distill` on all 872 validation sentences, over several seeds.

`run.py --quick` scores 300 sentences with one seed, where one sentence is 0.33 points: a target missed or met
there by a point or two says little. This runs the same recipes (`sides.py` builds them, as `run.py` does) with
`--eval-size 0` for each seed: our `full` model (also the teacher), `lora` with and without the first-token-only
last layer, and the 3-layer `distill` student of that seed's teacher. `--seed` also draws the 2,000 training rows.
Accuracy is each run's last epoch, as in the benchmark. About 2.5 minutes per seed on 2 cores.

    python benchmarks/seed_check.py --seeds 1,2,3 --threads 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / f"{dt.date.today().isoformat()}-seed-check.json")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="seed-check-"))
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ["NLP_TRANSFER_CACHE"] = str(work / "cache")  # cold feature and teacher caches, as in run.py
    sys.path.insert(0, str(HERE))
    import run
    import sides
    import torch

    from nlp_transfer.strategies.registry import STRATEGIES

    torch.set_num_threads(options.threads)
    args = run.parse_args(["--quick", "--eval-size", "0", "--threads", str(options.threads)])
    rows = []
    for seed in (int(s) for s in options.seeds.split(",")):
        args.seed = seed
        full = sides._train_ours(args, sides._our_recipe(args, {"name": "full"}, work / f"full-{seed}"), data_check=False)
        lora = {}
        for first_token in (True, False):
            STRATEGIES["lora"].first_token_training = first_token
            lora[first_token] = sides._run_lora(args, work / f"lora-{seed}-{first_token}")
        STRATEGIES["lora"].first_token_training = True
        args.teacher_dir = Path(full["output_dir"])
        distill = sides._run_distill(args, work / f"distill-{seed}")
        rows.append({"seed": seed, "full": full["accuracy_last_epoch"], "lora": lora[True]["accuracy_last_epoch"],
                     "lora_without_first_token": lora[False]["accuracy_last_epoch"],
                     "distill_student": distill["accuracy_last_epoch"],
                     "distill_retention": distill["accuracy_last_epoch"] / full["accuracy_last_epoch"]})
        print(json.dumps(rows[-1]), flush=True)
    means = {key: statistics.mean(r[key] for r in rows) for key in rows[0] if key != "seed"}
    result = {"command": " ".join(["python", *sys.argv]), "validation_rows": "all 872", "rows": rows, "means": means}
    options.out.write_text(json.dumps(result, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(means), f"\nwrote {options.out}")


if __name__ == "__main__":
    main()
