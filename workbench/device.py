"""Where tensors live and how they are computed: the device, mixed precision, torch threads."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch


class DeviceError(ValueError):
    """A device was asked for that this machine does not have; the message says what to use."""


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda[:N]' only where CUDA is available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} asked for, but CUDA is not available; use --device cpu")
    return torch.device(name)


@functools.cache
def cpu_has_bf16() -> bool:
    """True on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX), read from /proc/cpuinfo."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def uses_bf16(device: torch.device, precision: str) -> bool:
    """'auto' means bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere."""
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast where `uses_bf16`; plain fp32 otherwise. Heads that need fp32 (two-hot,
    GRU state, KL) cast to float32 themselves."""
    if not uses_bf16(device, precision):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Acting works on a frame or two at a time, where torch's thread pool only waits on itself
    and on the renderer (measured: 5 ms per step with one thread, up to 300 ms with two on a
    busy 2-core machine). Training batches keep every thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
