"""`sft-seeds`: LoRA supervised fine-tuning on the seed pairs only."""
from harness.aligner import AlignContext, AlignedModel, Aligner
from harness.options import as_dict
from harness.train import TrainingBudget, TrainOptions, finetune


class SftOnSeeds(Aligner):
    name = "sft-seeds"
    description = "LoRA supervised fine-tuning on the seeds only"
    options_class = TrainOptions

    def align(self, ctx: AlignContext) -> AlignedModel:
        budget = TrainingBudget(ctx.options.max_train_tokens)
        with ctx.store.stage("align/sft") as usage:
            outcome = finetune(ctx.backend, ctx.seeds, ctx.artifacts("sft"), ctx.options, ctx.seed,
                               max_tokens=budget.remaining)
            budget.spend(outcome.tokens_trained, outcome.stopped_at_budget)
            usage.update(tokens_trained=outcome.tokens_trained, optimizer_steps=outcome.steps,
                         first_loss=outcome.first_loss, last_loss=outcome.last_loss, resumed=outcome.resumed,
                         stopped_at_budget=outcome.stopped_at_budget)
        return AlignedModel(ctx.backend, adapter=outcome.adapter,
                            description={"aligner": self.name, "train": as_dict(ctx.options),
                                         "budget": budget.record()})
