"""Measure a hand-written PyTorch loop with Keras-like callbacks (``EnergyLoopCallback``).

python examples/plain_loop.py --epochs 3 --log-dir runs/energy
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from integrations.loop import EnergyLoopCallback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--log-dir", default="runs/energy")
    args = parser.parse_args()

    torch.manual_seed(0)
    x = torch.randn(32768, 16)
    y = x @ torch.randn(16, 1) + 0.1 * torch.randn(32768, 1)
    model = nn.Sequential(nn.Linear(16, 512), nn.Tanh(), nn.Linear(512, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

    callback = EnergyLoopCallback(log_dir=args.log_dir, epochs=args.epochs)
    callback.on_train_begin()
    try:
        for epoch in range(args.epochs):
            callback.on_epoch_begin(epoch)
            for batch in torch.split(torch.randperm(len(x)), 64):
                optimizer.zero_grad()
                loss = nn.functional.mse_loss(model(x[batch]), y[batch])
                loss.backward()
                optimizer.step()
            callback.on_epoch_end(epoch, logs={"loss": loss.item()}, samples=len(x))
    except BaseException:
        callback.on_exception()
        raise
    summary = callback.on_train_end()
    print(summary)
    print(f"per-epoch CSV: {summary.run_dir}/epochs.csv")


if __name__ == "__main__":
    main()
