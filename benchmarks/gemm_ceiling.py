"""How close to the fp32 matmul peak can the ``full`` case's training get? Its matrix products alone, timed.

``run.py``'s hardware-efficiency row divides the training FLOPs on real tokens (6 N T + 12 layers x hidden x
sum L^2) by the training time and by the fp32 peak of one large square matmul. This script times only the
matrix products one epoch of that case performs: the same 2,000 SST-2 rows (``data.limit``'s seeded sample),
tokenized at 128 tokens and batched by the loop's own ``LengthGroupedBatchSampler`` (32 rows), and for each
batch the forward and backward products of every encoder layer at the batch's padded shape (Q, K, V, output
and the two FFN projections through autograd: y = x W^T, dX, dW; attention scores and context per head). No
element-wise op, no optimizer, no data loading: a training step that did nothing but these products would
reach the printed share of the peak, so it bounds what any implementation calling these kernels can reach.

    python benchmarks/gemm_ceiling.py --threads 2          # about a minute on the idle 2-core machine
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def batch_shapes(data_dir: Path, rows: int, batch_size: int, max_length: int, seed: int, model_dir: str) -> tuple[list, list]:
    """((rows, padded length) of each batch of one epoch, every row's token count), as the loop batches them."""
    import datasets
    from transformers import AutoTokenizer

    from nlp_transfer.data.sampling import LengthGroupedBatchSampler

    train = datasets.load_dataset("csv", data_files=str(data_dir / "train.tsv"), delimiter="\t", quoting=3,
                                  split="train")
    train = train.shuffle(seed=seed).select(range(rows)).flatten_indices()  # data.limit's sample
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lengths = [len(ids) for ids in tokenizer(list(train["sentence"]), truncation=True, max_length=max_length)["input_ids"]]
    sampler = LengthGroupedBatchSampler(lengths, len(lengths), batch_size, seed)
    return [(len(batch), max(lengths[i] for i in batch)) for batch in sampler], lengths


def time_products(config, shapes: list, repeats: int) -> float:
    """Seconds for the forward and backward matrix products of one epoch of batches of these (rows, padded length)
    shapes (best of ``repeats``).

    Inputs and output gradients are made before the clock starts; ``autograd.grad`` returns dX and dW without
    accumulating them into ``.grad`` (the loop's step accumulates nothing either: one backward per step).
    """
    import torch

    hidden, inner, heads, layers = config.hidden_size, config.intermediate_size, config.num_attention_heads, config.num_hidden_layers
    weights = [torch.randn(out, inp, requires_grad=True) for inp, out in [(hidden, hidden)] * 4 + [(hidden, inner), (inner, hidden)]]
    inputs = {}
    for rows, length in shapes:
        if (rows, length) not in inputs:
            tokens = rows * length
            activations = {width: torch.randn(tokens, width, requires_grad=True) for width in (hidden, inner)}
            upstream = {width: torch.randn(tokens, width) for width in (hidden, inner)}
            per_head = [torch.randn(rows, heads, length, hidden // heads, requires_grad=True) for _ in range(3)]
            inputs[rows, length] = activations, upstream, per_head, torch.randn(rows, heads, length, hidden // heads)

    def one_epoch() -> None:
        for rows, length in shapes:
            activations, upstream, (q, k, v), context_grad = inputs[rows, length]
            for _ in range(layers):
                for weight in weights:  # y = x W^T; backward: dX = dY W, dW = dY^T x
                    x = activations[weight.shape[1]]
                    torch.autograd.grad(torch.nn.functional.linear(x, weight), (x, weight), upstream[weight.shape[0]])
                context = (q @ k.transpose(-1, -2)) @ v  # scores, then context; backward: 4 more products
                torch.autograd.grad(context, (q, k, v), context_grad)

    one_epoch()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        one_epoch()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "sst2"))
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trained-gflops", type=float, default=None,
                        help="the training's GFLOP/s from a run.py report, to print beside the ceiling")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from nlp_transfer.models.files import resolve_model_path

    torch.set_num_threads(args.threads)
    model_dir = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    config = AutoConfig.from_pretrained(model_dir)
    shapes, lengths = batch_shapes(Path(args.data_dir), args.rows, args.batch_size, args.max_length, args.seed, model_dir)
    tokens, squared = sum(lengths), sum(n * n for n in lengths)
    # the report's count (report._training_flops): 6 N T + 12 layers hidden sum(L^2), N the parameters outside the
    # embeddings (sides.run_machine), so the two shares of the peak divide the same FLOPs
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    non_embedding = sum(p.numel() for name, p in model.named_parameters() if ".embeddings." not in name)
    flops = 6 * non_embedding * tokens + 12 * config.num_hidden_layers * config.hidden_size * squared
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sides import matmul_seconds  # run.py's peak: the fastest of 20 fp32 2048 x 2048 matmuls

    peak = 2 * 2048 ** 3 / min(matmul_seconds(2048, 20)) / 1e9
    seconds = time_products(config, shapes, args.repeats)
    padded_tokens = sum(rows * length for rows, length in shapes)
    gflops = flops / seconds / 1e9
    print(f"{args.rows} SST-2 rows, {len(shapes)} batches of {args.batch_size}, {tokens} tokens "
          f"({100 * (1 - tokens / padded_tokens):.1f} % padding; mean padded length {padded_tokens / args.rows:.1f}), "
          f"{args.threads} threads")
    print(f"fp32 matmul peak (2048 x 2048): {peak:.1f} GFLOP/s")
    print(f"the epoch's matrix products alone: {seconds:.2f} s, {gflops:.1f} GFLOP/s on real tokens = "
          f"{100 * gflops / peak:.1f} % of the peak")
    if args.trained_gflops:
        print(f"the training ({args.trained_gflops} GFLOP/s) = {100 * args.trained_gflops / peak:.1f} % of the peak, "
              f"{100 * args.trained_gflops / gflops:.0f} % of the products-only ceiling")


if __name__ == "__main__":
    main()
