"""Measure a plain PyTorch DDP loop under ``torchrun``: one job directory, each device counted once.

torchrun --standalone --nproc-per-node 2 examples/torchrun_ddp.py --epochs 3 --log-dir runs/energy

Every rank creates the same ``EnergyTracker``; it reads its rank from torchrun's environment and
writes a shard of the job's one run directory (``runs/energy/torchrun-<id>/ranks/<host>-r<rank>/``).
Rank 0 prints the job's rows merged from every rank. On a GPU machine give each rank
``gpu_devices=[local_rank]`` to have it read only its own GPU (without it every rank reads every
GPU it sees, and duplicates are dropped by UUID). Runs as a single process with plain ``python`` too.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tracker import EnergyTracker, load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--log-dir", default="runs/energy")
    args = parser.parse_args()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("gloo")  # on GPUs: "nccl", and the model on cuda:LOCAL_RANK
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)

    torch.manual_seed(0)
    x = torch.randn(8192, 16)
    y = x @ torch.randn(16, 1) + 0.1 * torch.randn(8192, 1)
    model = nn.Sequential(nn.Linear(16, 256), nn.Tanh(), nn.Linear(256, 1))
    model = DistributedDataParallel(model) if distributed else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    mine = torch.arange(rank, len(x), world)  # this rank's share of the data

    with EnergyTracker(args.log_dir, epochs=args.epochs) as energy:
        for epoch in range(args.epochs):
            with energy.epoch(epoch, samples=len(mine)):
                for batch in torch.split(mine[torch.randperm(len(mine))], 64):
                    optimizer.zero_grad()
                    loss = nn.functional.mse_loss(model(x[batch]), y[batch])
                    loss.backward()
                    optimizer.step()
                energy.log_metrics({"loss": loss.item()})
    if distributed:
        dist.barrier()  # the training's own collective: every rank's shard is finished past it
    if rank == 0:
        where = energy.job_dir or energy.run_dir
        run = load_run(where)
        total = sum(r["energy_kwh"] for r in run.epochs)
        print(f"{run.name}: {len(run.info.get('shards') or [run])} writer(s), {total:.3g} kWh in all")
        print(f"per-epoch CSV: {where}/epochs.csv")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
