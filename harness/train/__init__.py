"""Training, apart from inference: LoRA SFT and the SPIN preference loss on a model handle (`HFModel`),
each returning a standard PEFT adapter directory; the budgeted batch schedule and the token cap they share."""
from harness.train.budget import TrainingBudget
from harness.train.lora import SftOutcome, TrainResult, finetune, train_lora
from harness.train.options import GenerationOptions, TrainOptions
from harness.train.preference import DEFAULT_BETA, SpinResult, spin_loss, train_spin
from harness.train.schedule import BudgetedBatches

__all__ = ["BudgetedBatches", "DEFAULT_BETA", "GenerationOptions", "SftOutcome", "SpinResult", "TrainOptions",
           "TrainResult", "TrainingBudget",
           "finetune", "spin_loss", "train_lora", "train_spin"]
