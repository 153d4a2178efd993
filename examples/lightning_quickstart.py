"""Measure a PyTorch Lightning training run with ``EnergyCallback``: one line in the Trainer.

Trains a small classifier on data the script makes itself (on the CPU unless a GPU is there),
then prints the energy summary and where the per-epoch CSV is.

    python examples/lightning_quickstart.py --epochs 3 --log-dir runs/energy
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from integrations.lightning import EnergyCallback


def make_data(samples: int, features: int = 32, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, features, generator=generator)
    y = (x[:, : features // 2].sum(dim=1) > 0).long()
    return TensorDataset(x, y)


class Classifier(L.LightningModule):
    """A small MLP: 32 features in, 2 classes out."""

    def __init__(self, features: int = 32, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2)
        )

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Cross-entropy on one batch, logged once per epoch."""
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Accuracy on one validation batch, shown in the progress bar."""
        x, y = batch
        self.log("val_accuracy", (self.net(x).argmax(dim=1) == y).float().mean(), prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam at 1e-3."""
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--log-dir", default=None, help="default: <Lightning's log dir>/energy")
    args = parser.parse_args()

    L.seed_everything(0, verbose=False)
    train = DataLoader(make_data(16384), batch_size=256, shuffle=True)
    val = DataLoader(make_data(2048, seed=1), batch_size=512)
    energy = EnergyCallback(log_dir=args.log_dir)
    trainer = L.Trainer(max_epochs=args.epochs, callbacks=[energy], enable_model_summary=False, log_every_n_steps=16)
    trainer.fit(Classifier(), train, val)

    summary = energy.summary()
    print(summary)
    print(f"per-epoch CSV: {summary.run_dir}/epochs.csv")


if __name__ == "__main__":
    main()
