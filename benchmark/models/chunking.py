"""How many inputs go through the model in one pass, where no probe chose it.

IG steps, SmoothGrad samples, occlusion steps and images are batched together and cut into
chunks of this many inputs. A run chooses the chunk by measurement (``models.tuning``); this is
what 'auto' falls back to outside a run, and the memory cap of the GPU probe's chunk ladder: on a
GPU the chunk is sized from the measured peak memory of a small forward+backward and the free
memory; on a CPU it is a fixed 8.
"""

from __future__ import annotations

import torch

from .bundle import ModelBundle
from .tuning import CPU_FALLBACK_CHUNK as CPU_CHUNK
GPU_MEMORY_SHARE = 0.6  # of the free memory, for one pass; the rest: maps, metrics, the allocator
GPU_CHUNK_LIMIT = 1024


def resolve_chunk_size(requested: int | str, model: ModelBundle, image_size: int, retained_inputs: int = 0) -> int:
    """``retained_inputs``: images whose forward graph stays in memory meanwhile (the recorded trained
    bottom of ``attribution.reuse``: one batch); on a GPU their memory is not available to a chunk."""
    if requested != "auto":
        return int(requested)
    if model.device.type != "cuda":
        return CPU_CHUNK
    return gpu_chunk(model, image_size, retained_inputs=retained_inputs)


def gpu_chunk(model: ModelBundle, image_size: int, probe: int = 2, retained_inputs: int = 0) -> int:
    """Inputs per pass from the peak memory of a ``probe``-input forward+backward."""
    device = model.device
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    baseline = torch.cuda.memory_allocated(device)
    x = torch.zeros(probe, 3, image_size, image_size, device=device, requires_grad=True)
    out = model.module(x)
    torch.autograd.grad(out[:, 0].sum(), x)
    per_input = max(1, (torch.cuda.max_memory_allocated(device) - baseline) // probe)
    del x, out
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(GPU_CHUNK_LIMIT, GPU_MEMORY_SHARE * free // per_input - retained_inputs)))
