"""Data-parallel training across processes with ``torch.distributed`` (one process per GPU, or several on a CPU).

Launch: ``mmimic train --nproc N ...`` (starts ``torchrun --standalone --nproc_per_node N`` on the same entry
point), or torchrun yourself, across machines too::

    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 -m mmimic.cli train ...

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (and the rendezvous); ``Dist.from_environment`` reads
them. Each rank has its own device (``cuda:LOCAL_RANK``, or the CPU), its own env seed and its share of the
envs (``num_envs / WORLD_SIZE``); the learner's parameters and buffers start equal (broadcast from rank 0),
gradients are averaged (one all-reduce of all of them per minibatch, the KL for the adaptive learning rate
folded in), and running normalizers merge the statistics of every rank, so parameters, optimizer states and
normalizers stay identical on every rank. nccl on CUDA, gloo on the CPU.
"""

from __future__ import annotations

import datetime as _dt
import os

import torch
import torch.distributed as tdist


class Dist:
    """The process group of a distributed run: rank, world size and the few collectives the trainer uses."""

    def __init__(self, rank: int, world_size: int, local_rank: int, local_world_size: int, device: torch.device):
        self.rank, self.world_size = rank, world_size
        self.local_rank, self.local_world_size = local_rank, local_world_size
        self.device = device  # where collectives' tensors live (nccl: this rank's GPU)
        self.backend = tdist.get_backend()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str, timeout_min: float = 30.0) -> "Dist | None":
        """The process group torchrun describes in the environment (``WORLD_SIZE`` > 1), or None (one process).

        ``device``: the run's device (``cpu``, ``cuda``, ``cuda:K``, ``auto``); on CUDA each rank takes
        ``cuda:LOCAL_RANK`` and nccl, on the CPU gloo."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return None
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if cuda:
            if local >= torch.cuda.device_count():
                raise RuntimeError(f"rank {rank}: LOCAL_RANK {local} but torch sees {torch.cuda.device_count()} CUDA "
                                   "device(s) on this machine: use at most one process per GPU (--nproc)")
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        else:
            dev = torch.device("cpu")
        if not tdist.is_initialized():
            tdist.init_process_group("nccl" if cuda else "gloo", timeout=_dt.timedelta(minutes=timeout_min))
        return cls(rank, world, local, local_world, dev)

    def run_device(self, device: str) -> str:
        """The device this rank runs on for the config's ``device``."""
        return str(self.device) if self.device.type == "cuda" else "cpu"

    # ------------------------------------------------------------------ collectives
    @torch.no_grad()
    def average_(self, tensors: list[torch.Tensor]) -> None:
        """Replace each tensor by its mean over the ranks, in place: one all-reduce of a flat buffer."""
        if not tensors:
            return
        flat = torch.cat([t.reshape(-1).to(self.device, torch.float64 if t.dtype == torch.float64 else torch.float32)
                          for t in tensors])
        tdist.all_reduce(flat)
        flat /= self.world_size
        i = 0
        for t in tensors:
            t.copy_(flat[i:i + t.numel()].view_as(t))
            i += t.numel()

    @torch.no_grad()
    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over the ranks, in place (float64 statistics stay float64)."""
        tdist.all_reduce(t)
        return t

    @torch.no_grad()
    def average_gradients(self, params: list[torch.Tensor], extra: list[torch.Tensor] = ()) -> None:
        """Average ``params``' gradients (a missing one counts as 0) and the ``extra`` tensors over the ranks."""
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.average_([p.grad for p in params] + list(extra))

    @torch.no_grad()
    def broadcast_(self, tensors: list[torch.Tensor], src: int = 0) -> None:
        """Rank ``src``'s values into every rank's tensors, in place."""
        for t in tensors:
            tdist.broadcast(t.data, src)

    def any_of(self, flags: list[bool]) -> list[bool]:
        """Each flag true on every rank if it is true on any rank (one host sync: per iteration, not per step)."""
        t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32, device=self.device)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def gather(self, obj) -> list | None:
        """Every rank's ``obj`` (picklable, CPU tensors) on rank 0, in rank order; None elsewhere."""
        out = [None] * self.world_size if self.is_main else None
        tdist.gather_object(obj, out, dst=0)
        return out

    def broadcast_object(self, obj):
        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        tdist.barrier()

    def close(self) -> None:
        if tdist.is_initialized():
            tdist.destroy_process_group()


def to_cpu(obj):
    """A nested structure of tensors (dicts, lists) with every tensor moved to the CPU (for gathering)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


__all__ = ["Dist", "to_cpu"]
