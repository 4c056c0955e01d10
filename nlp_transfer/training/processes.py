"""The processes of a run: the Accelerator, which process owns the output, collectives, and a clean end of a launch."""

from __future__ import annotations

import logging
import os

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState

logger = logging.getLogger(__name__)


def new_accelerator(**kwargs) -> Accelerator:
    """An Accelerator for this run's settings, on CPU processes (gloo) when there is no GPU.

    Accelerate keeps its settings in process-wide singletons; a second run in the same Python
    process (another recipe, another precision) starts from fresh settings. The process group
    itself (``PartialState``, set up under torchrun) is kept.
    """
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    if kwargs.get("mixed_precision") == "fp16" and not torch.cuda.is_available():
        logger.warning("train.mixed_precision=fp16 has no effect on CPU (autocast runs fp32); use bf16 for CPU mixed precision")
    return Accelerator(cpu=not torch.cuda.is_available(), **kwargs)


def is_main_launch() -> bool:
    """Whether this is the process that owns the output folder: the only one, or rank 0 of a launch."""
    return os.environ.get("RANK", "0") == "0"


def any_process(accelerator: Accelerator, flag: bool) -> bool:
    """Whether ``flag`` is true on any process (a collective: every process must call it)."""
    if accelerator.num_processes == 1:
        return flag
    return accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), "sum").item() > 0


# Multi-process runs keep their Accelerator and DDP model here until the process ends (see ``finish_processes``).
LIVE_UNTIL_EXIT: list = []


def finish_processes() -> None:
    """End a multi-process launch: every rank meets at a barrier, then the process exits at once (status 0).

    Freeing a DDP model can deadlock on CPU: the Reducer's last reference to its gloo process group
    is dropped with the GIL held, and the group's destructor joins a gloo thread that waits for the
    GIL. A rank then hangs forever after its work is done. So the run keeps those objects alive
    (``LIVE_UNTIL_EXIT``) and the process ends here without the interpreter's teardown, after
    flushing its output. Does nothing in a single-process run. Call it last, after a successful run.
    """
    import sys

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def launched_processes() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank_checksums(model, accelerator) -> list[float]:
    """One checksum of the weights per process; they must agree after a multi-process run."""
    local = torch.stack([p.detach().double().sum() + p.detach().double().abs().sum() for p in model.parameters()]).sum()
    return [round(v, 6) for v in accelerator.gather(local.reshape(1).to(accelerator.device)).tolist()]
