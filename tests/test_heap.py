"""The loop's freed-memory reuse: large buffers allocated again and again stop costing page faults, and the
memory kept goes back to the system when the block ends."""

import resource

import pytest
import torch

from nlp_transfer.training import heap

pytestmark = pytest.mark.skipif(heap._glibc() is None, reason="glibc's malloc only; elsewhere the block is a no-op")

MIB = 2**20 // 4  # float32 elements per MiB
FRESH = 64 * 2**20 // resource.getpagesize() // 2  # half of a 64 MiB buffer's pages faulted in: mapped fresh


def _faults_per_buffer(times: int) -> list[int]:
    """Minor page faults of each of ``times`` 64 MiB buffers allocated, written and freed in turn."""
    faults = []
    for _ in range(times):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(64 * MIB)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return faults


def _resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def test_a_large_buffer_allocated_again_and_again_stops_faulting_within_the_block():
    # 64 MiB is above glibc's largest mmap threshold: by default such a buffer is mapped fresh each time
    with heap.freed_memory_kept():
        inside = _faults_per_buffer(20)
    # the first few grow the heap; then the same memory serves every buffer
    assert sum(inside[-5:]) < FRESH, inside


def test_the_memory_kept_goes_back_to_the_system_when_the_outermost_block_ends():
    before = _resident_mib()
    with heap.freed_memory_kept():
        with heap.freed_memory_kept():
            torch.ones(256 * MIB)
        kept = _resident_mib() - before  # the inner block's end gives nothing back
        torch.ones(256 * MIB)
    after = _resident_mib() - before
    assert kept > 200, kept
    assert after < 50, (kept, after)
