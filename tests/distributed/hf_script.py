"""A tiny Hugging Face ``Trainer`` run with ``EnergyTrainerCallback`` (a process of its own, or a ``torchrun`` rank).

Usage: ``python hf_script.py OUT [--epochs E]``

The model is a 1-layer GPT-2 built from a config (no download), trained on 16 random sequences on
CPU; every process has a fake NVML with the same two GPUs of steady power (150 W and 250 W).
Rank 0 writes the Trainer's ``log_history`` to
``OUT/log_history.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository

import importlib.util  # noqa: E402

if importlib.util.find_spec("transformers") is None:  # the `transformers` extra (in `test`) brings it
    sys.exit("hf_script.py needs transformers: pip install -c constraints.txt -e '.[transformers]'")

import torch  # noqa: E402
from rank_script import RecordingNvml, gpu_uuid  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments  # noqa: E402

from integrations.transformers import EnergyTrainerCallback  # noqa: E402
from tracker.testing import FakeGpu, steady  # noqa: E402

GPU_W = (150.0, 250.0)


class Sequences(torch.utils.data.Dataset):
    """Random token sequences, labels equal to the inputs (causal language modelling)."""

    def __init__(self, count: int, length: int = 8, vocab: int = 64) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (count, length), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


class Recorder(TrainerCallback):
    """A stand-in for a reporter (TensorBoard, W&B): keeps every log it is given, as it is given."""

    def __init__(self) -> None:
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def tiny_trainer(out: Path, epochs: int, callbacks: list) -> Trainer:
    """A 1-layer GPT-2 and its Trainer on CPU: evaluation and a log at each epoch's end."""
    config = GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    args = TrainingArguments(
        output_dir=str(out / "trainer"), num_train_epochs=epochs, per_device_train_batch_size=4,
        per_device_eval_batch_size=4, eval_strategy="epoch", logging_strategy="epoch", save_strategy="no",
        report_to="none", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip
    return Trainer(
        model=GPT2LMHeadModel(config), args=args, train_dataset=Sequences(16), eval_dataset=Sequences(8),
        callbacks=callbacks,
    )  # fmt: skip


def fake_nvml(name: str = "NVIDIA Fake A100") -> RecordingNvml:
    host = os.environ.get("ENERGY_TEST_HOST", "node-a")
    return RecordingNvml([FakeGpu(uuid=gpu_uuid(host, i), trace=steady(w), name=name) for i, w in enumerate(GPU_W)])


def energy_callback(out: Path, nvml: RecordingNvml, **options) -> EnergyTrainerCallback:
    (out / "no-powercap").mkdir(parents=True, exist_ok=True)
    return EnergyTrainerCallback(
        log_dir=out / "logs", nvml=nvml, powercap_root=out / "no-powercap", cpu_tdp_w=65.0, ram_w=5.0,
        carbon_intensity_g_per_kwh=400.0, interval_s=3600.0, jitter=0.0,
        host=os.environ.get("ENERGY_TEST_HOST", "node-a"), **options,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    nvml = fake_nvml()
    recorder = Recorder()
    callback = energy_callback(args.out, nvml)
    trainer = tiny_trainer(args.out, args.epochs, [recorder])
    callback.attach(trainer)
    trainer.train()
    if trainer.is_world_process_zero():
        (args.out / "log_history.json").write_text(json.dumps(trainer.state.log_history))
        (args.out / "recorded.json").write_text(json.dumps(recorder.logs))


if __name__ == "__main__":
    main()
