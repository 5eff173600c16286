"""DPO ``dpo_norm`` (β 5) on the real SmolLM2-135M-Instruct: per-step loss and chosen/rejected rewards equal to
TRL's ``DPOTrainer`` with its length-normalised sigmoid loss (``sigmoid_norm``), on GSM8K pairs (the right
worked answer vs the same with a wrong final number), the same ids (TRL's tokenization), order, AdamW and schedule."""

import numpy as np
import pytest

from tests.helpers.real_conversations import final_number, gsm8k_rows, worked_answer
from tests.real_model.jax_steps import run_steps
from tests.real_model.torch_reference import with_trainable_pad_row
from tulu_jax.stages.dpo import DPOObjectiveConfig, make_dpo_loss
from tulu_jax.stages.preference_batches import PAIR_KEYS, REFERENCE_KEYS, pair_sequence_logps
from tulu_jax.stages.preference_training import global_pairs_context

BETA, PEAK_LR, WARMUP, MAX_GRAD_NORM = 5.0, 5e-5, 1, 1.0
TOLERANCE = 1e-4


def preference_records(count: int, max_chars: int | None = None) -> list[dict]:
    """``count`` pairs from GSM8K train row 300 on, in file order; with ``max_chars``, only rows whose question and
    worked answer together are that short (the make-test variant: a third of the tokens on 2 CPU cores)."""
    records = []
    for row in gsm8k_rows("train", 1000, 300):
        right = worked_answer(row["answer"])
        if max_chars is not None and len(row["question"]) + len(right) > max_chars:
            continue
        if len(records) == count:
            break
        wrong = right[: right.rindex("The answer is")] + f"The answer is {int(float(final_number(row['answer']))) + 3}."
        records.append({"prompt": [{"role": "user", "content": row["question"]}],
                        "chosen": [{"role": "assistant", "content": right}],
                        "rejected": [{"role": "assistant", "content": wrong}]})
    return records


def trl_dpo(model_dir, records, steps: int, output_dir):
    """TRL's DPOTrainer, one pair a step in dataset order; its per-step loss, rewards and tokenized pairs."""
    import datasets
    import torch
    import transformers
    from trl import DPOConfig, DPOTrainer

    class InOrderDPOTrainer(DPOTrainer):
        step_losses: list = []
        step_rewards: list = []

        def _get_train_sampler(self, train_dataset=None):
            return torch.utils.data.SequentialSampler(train_dataset or self.train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            self.step_losses.append(float((result[0] if return_outputs else result).detach()))
            logged = self._metrics["train"]  # emptied at every log: read this step's entries now
            self.step_rewards.append((logged["rewards/chosen"][-1], logged["rewards/rejected"][-1]))
            return result

    torch.manual_seed(0)
    model = with_trainable_pad_row(transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32))
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    args = DPOConfig(
        output_dir=str(output_dir), per_device_train_batch_size=1, gradient_accumulation_steps=1, max_steps=steps,
        learning_rate=PEAK_LR, lr_scheduler_type="linear", warmup_steps=WARMUP, weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=MAX_GRAD_NORM, beta=BETA,
        loss_type=["sigmoid_norm"], logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, seed=0,
        dataloader_num_workers=0, max_length=None, bf16=False,  # TRL defaults to bf16; the comparison is float32
    )
    trainer = InOrderDPOTrainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(records),
                                processing_class=tokenizer)
    trainer.step_losses, trainer.step_rewards = [], []
    trainer.train()
    tokenized = [trainer.train_dataset[i] for i in range(steps)]
    chosen, rejected = zip(*trainer.step_rewards)
    return trainer.step_losses, list(chosen), list(rejected), tokenized


def pair_batch(pair: dict) -> dict:
    """One pair as our DPO batch arrays: prompt + response ids, labels -100 on the prompt, [1, length]."""
    batch = {}
    for side in ("chosen", "rejected"):
        ids = list(pair["prompt_ids"]) + list(pair[f"{side}_ids"])
        labels = [-100] * len(pair["prompt_ids"]) + list(pair[f"{side}_ids"])
        batch[f"{side}_input_ids"] = np.asarray([ids], np.int32)
        batch[f"{side}_labels"] = np.asarray([labels], np.int32)
        batch[f"{side}_segment_ids"] = np.ones((1, len(ids)), np.int32)
        batch[f"{side}_positions"] = np.arange(len(ids), dtype=np.int32)[None]
    length = max(batch["chosen_input_ids"].shape[1], batch["rejected_input_ids"].shape[1])
    for key, value in list(batch.items()):  # both sides share one length: right padding, segment 0
        batch[key] = np.pad(value, ((0, 0), (0, length - value.shape[1])),
                            constant_values=-100 if key.endswith("labels") else 0)
    return batch


def compare_dpo(smollm2_dir, smollm2_ours, tmp_path, steps: int, max_chars: int | None = None):
    import jax

    config, params = smollm2_ours
    records = preference_records(steps, max_chars)
    trl_losses, trl_chosen, trl_rejected, tokenized = trl_dpo(smollm2_dir, records, steps, tmp_path)
    batches = [pair_batch(pair) for pair in tokenized]
    reference = jax.jit(lambda p, b: pair_sequence_logps(config, p, b, 256))
    for batch in batches:  # the reference is the starting policy: its log-probs cached, as the stage does
        logps = reference(params, {key: batch[key] for key in PAIR_KEYS})
        batch["reference_chosen_logps"] = np.asarray(logps["chosen_logps"])
        batch["reference_rejected_logps"] = np.asarray(logps["rejected_logps"])
    objective = DPOObjectiveConfig(loss_type="dpo_norm", beta=BETA)
    ours = run_steps(config, params, make_dpo_loss(config, objective), batches, PAIR_KEYS + REFERENCE_KEYS,
                     peak_lr=PEAK_LR, warmup=WARMUP, max_grad_norm=MAX_GRAD_NORM, context_fn=global_pairs_context)
    # dpo_norm's rewards are per response token, β·(log-ratio)/|y|; TRL logs β·(summed log-ratio): divide by |y|.
    # (Summed over ~150 tokens the two float32 sums differ by ~1e-4 even where policy = reference.)
    lengths = [(len(pair["chosen_ids"]), len(pair["rejected_ids"])) for pair in tokenized]
    assert [(step["lengths/chosen"], step["lengths/rejected"]) for step in ours] == lengths
    trl_chosen = [reward / chosen for reward, (chosen, _) in zip(trl_chosen, lengths)]
    trl_rejected = [reward / rejected for reward, (_, rejected) in zip(trl_rejected, lengths)]
    our_chosen = [step["rewards/chosen"] for step in ours]
    our_rejected = [step["rewards/rejected"] for step in ours]
    print(f"\nDPO dpo_norm beta {BETA:g}, {steps} steps: TRL loss {trl_losses[0]:.5f} -> {trl_losses[-1]:.5f}; "
          f"max |loss diff| {np.abs(np.subtract([s['loss'] for s in ours], trl_losses)).max():.2e}, max |per-token "
          f"reward diff| {max(np.abs(np.subtract(our_chosen, trl_chosen)).max(), np.abs(np.subtract(our_rejected, trl_rejected)).max()):.2e}")
    np.testing.assert_allclose([step["loss"] for step in ours], trl_losses, rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(our_chosen, trl_chosen, rtol=TOLERANCE, atol=TOLERANCE)
    np.testing.assert_allclose(our_rejected, trl_rejected, rtol=TOLERANCE, atol=TOLERANCE)
    assert trl_losses[-1] != trl_losses[0]  # the policy moved


def test_dpo_norm_steps_equal_trl_sigmoid_norm(smollm2_shallow_dir, smollm2_shallow_ours, tmp_path):
    # 3 steps is the fewest that show an update: the warmup step has learning rate 0. The model's first 4 layers
    # (conftest) and short pairs keep it cheap on 2 CPU cores; the slow variant runs all 30 layers.
    compare_dpo(smollm2_shallow_dir, smollm2_shallow_ours, tmp_path, steps=3, max_chars=300)


@pytest.mark.slow
def test_dpo_norm_10_steps_equal_trl_sigmoid_norm(smollm2_dir, smollm2_ours, tmp_path):
    compare_dpo(smollm2_dir, smollm2_ours, tmp_path, steps=10)
