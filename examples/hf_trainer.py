"""Measure a Hugging Face ``Trainer``: a row per epoch and per evaluation, the figures in its logs.

python examples/hf_trainer.py --epochs 2 --log-dir runs/energy

A small 2-layer GPT-2 built from a config (nothing downloaded) learns random token sequences on the CPU.
The same script runs under the Trainer's DDP: ``torchrun --standalone --nproc-per-node 2
examples/hf_trainer.py`` (one job directory, a shard per rank, each device counted once).
"""

from __future__ import annotations

import argparse

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from integrations.transformers import EnergyTrainerCallback


class Sequences(torch.utils.data.Dataset):
    """Random token sequences; the labels are the inputs (causal language modelling)."""

    def __init__(self, count: int, seed: int) -> None:
        self.ids = torch.randint(0, 256, (count, 32), generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--log-dir", default="runs/energy")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=256, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)
    training = TrainingArguments(
        output_dir="runs/hf_trainer", num_train_epochs=args.epochs, per_device_train_batch_size=16,
        eval_strategy="epoch", logging_strategy="epoch", save_strategy="no", report_to="none", use_cpu=True,
        disable_tqdm=True,
    )  # fmt: skip
    trainer = Trainer(
        model=GPT2LMHeadModel(config), args=training, train_dataset=Sequences(256, 0), eval_dataset=Sequences(64, 1)
    )
    energy = EnergyTrainerCallback(log_dir=args.log_dir).attach(trainer)  # first: reporters see its figures
    try:
        trainer.train()
    except BaseException:
        energy.close("interrupted")
        raise
    if trainer.is_world_process_zero():
        print({k: v for k, v in trainer.state.log_history[-1].items() if k.startswith("energy/")})
        print(f"per-epoch CSV: {energy.run_dir}/epochs.csv")


if __name__ == "__main__":
    main()
