"""Measure a hand-written PyTorch training loop with the ``EnergyTracker`` context manager.

Trains a small classifier on data the script makes itself, for a few epochs on the CPU,
then prints the summary and where the per-epoch CSV is.

    python examples/context_manager.py --epochs 3 --log-dir runs/energy
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from tracker import EnergyTracker


def make_data(samples: int = 32768, features: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=generator)
    y = (x[:, : features // 2].sum(dim=1) > 0).long()
    return x, y


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    model.train()
    total = 0.0
    for batch in torch.split(torch.randperm(len(x)), 128):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / len(x)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).argmax(dim=1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--log-dir", default="runs/energy")
    args = parser.parse_args()

    torch.manual_seed(0)
    x, y = make_data()
    x_val, y_val = make_data(1024, seed=1)
    model = nn.Sequential(nn.Linear(32, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    with EnergyTracker(log_dir=args.log_dir, epochs=args.epochs) as energy:
        for epoch in range(args.epochs):
            with energy.epoch(epoch, samples=len(x)):
                loss = train_one_epoch(model, optimizer, x, y)
                energy.log_metrics({"loss": loss})
            with energy.phase("validation", samples=len(x_val)):
                energy.log_metrics({"val_accuracy": accuracy(model, x_val, y_val)})
    print(energy.summary())
    print(f"per-epoch CSV: {energy.run_dir / 'epochs.csv'}")


if __name__ == "__main__":
    main()
