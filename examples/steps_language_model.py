"""A step-based run: a tiny causal language model trained for ``--max-steps`` steps, a row every ``--row-every`` steps.

python examples/steps_language_model.py --max-steps 120 --row-every 40 --log-dir runs/energy

Language models train by steps, often in one long epoch: the epoch is written as a row every N steps
as it runs (its energy is the sum of those rows), each row carries the forecast of the whole run from
the step rate, and ``samples`` counts tokens, so ``energy_per_sample_j`` is the energy per token.
The model is a 1-layer GPT-2 built from a config (nothing downloaded), on random tokens, on the CPU.
"""

from __future__ import annotations

import argparse

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from tracker import EnergyTracker, load_run

BATCH, LENGTH = 4, 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=120)
    parser.add_argument("--row-every", type=int, default=40)
    parser.add_argument("--log-dir", default="runs/energy")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=256, n_positions=LENGTH, n_embd=16, n_layer=1, n_head=2, bos_token_id=0,
                        eos_token_id=0)  # fmt: skip
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with EnergyTracker(args.log_dir, total_steps=args.max_steps, row_every_n_steps=args.row_every) as energy:
        with energy.epoch(0):  # one epoch, as long as the run: a row every --row-every steps
            for _ in range(args.max_steps):
                tokens = torch.randint(0, 256, (BATCH, LENGTH))
                loss = model(input_ids=tokens, labels=tokens).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                energy.step(samples=tokens.numel())  # a counter increment; a row is written when due
            energy.log_metrics({"loss": loss.item()})
    print(energy.summary())
    for row in load_run(energy.run_dir).epochs:
        if row["phase"] == "train" and row["first_step"] is not None:  # (the epoch's last row: after its last step)
            per_token = row["energy_per_sample_j"]
            print(f"steps {row['first_step']}-{row['last_step']} ({row['status']}): "
                  f"{per_token * 1e3 if per_token else 0:.3f} mJ per token, forecast "
                  f"{row['forecast_total_kwh'] or 0:.3g} kWh")  # fmt: skip
    print(f"rows: {energy.run_dir}/epochs.csv")


if __name__ == "__main__":
    main()
