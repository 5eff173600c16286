"""From conversations to left-padded prompt batches: the chat template, tokenization, length buckets.

A prompt is rendered with the tokenizer's own chat template when it has one, else the Tülu template (or the
one asked for), and tokenized segment by segment exactly as training tokenizes the same conversation
(``data_pipeline.examples``), so the ids a model is prompted with are the ids it was trained on.

The sampler compiles once per prompt-length shape, so prompt lengths are rounded up to a bucket: powers of
two from 16 to 512, then multiples of 512. Left padding makes the extra columns free of meaning (they are
masked), and at most ~2x prefill work is wasted on short prompts while a whole eval set compiles a handful
of programs instead of one per length.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from data_pipeline.chat_template import conversation_segments, resolve_chat_template
from tulu_jax.errors import DataError

MIN_BUCKET = 16
POWER_OF_TWO_LIMIT = 512


def bucket_length(length: int) -> int:
    """The padded prompt length used for a longest prompt of ``length`` tokens."""
    if length <= MIN_BUCKET:
        return MIN_BUCKET
    if length <= POWER_OF_TWO_LIMIT:
        return 1 << (length - 1).bit_length()
    return -(-length // POWER_OF_TWO_LIMIT) * POWER_OF_TWO_LIMIT


def left_pad(
    prompts: Sequence[Sequence[int]], pad_id: int, *, length: Optional[int] = None, batch_size: Optional[int] = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(prompt_ids, prompt_mask)`` int32 ``[batch, length]``, each prompt right-aligned.

    ``length`` defaults to the bucket of the longest prompt. Rows beyond ``len(prompts)`` up to ``batch_size``
    are filler (one pad token, unmasked so the row stays well defined); callers drop their outputs.
    """
    if not prompts:
        raise DataError("no prompts to generate from")
    longest = max(len(prompt) for prompt in prompts)
    if min(len(prompt) for prompt in prompts) == 0:
        raise DataError("a prompt has no tokens; every prompt needs at least one")
    length = bucket_length(longest) if length is None else length
    if longest > length:
        raise DataError(f"a prompt has {longest} tokens, more than the padded length {length}")
    rows = max(batch_size or 0, len(prompts))
    ids = np.full((rows, length), pad_id, np.int32)
    mask = np.zeros((rows, length), np.int32)
    for row, prompt in enumerate(prompts):
        ids[row, length - len(prompt) :] = prompt
        mask[row, length - len(prompt) :] = 1
    mask[len(prompts) :, -1] = 1
    return ids, mask


def record_messages(record: dict, where: str) -> list[dict]:
    """The prompt messages of a JSONL record: its ``messages`` (a trailing assistant turn is dropped) or ``prompt``."""
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
        ):
            raise DataError(f"{where}: 'messages' must be a list of {{'role': str, 'content': str}} objects")
        if messages and messages[-1]["role"] == "assistant":
            messages = messages[:-1]
        if not messages:
            raise DataError(f"{where}: 'messages' holds no prompt turn")
        for message in messages:
            if message["role"] not in ("system", "user", "assistant"):
                raise DataError(f"{where}: unknown role {message['role']!r}; use system, user or assistant")
        return messages
    if isinstance(record.get("prompt"), str):
        return [{"role": "user", "content": record["prompt"]}]
    raise DataError(f"{where}: the record needs 'messages' (a list of turns) or 'prompt' (a string)")


def encode_prompt(
    tokenizer, messages: Sequence[dict], add_bos: bool = False, chat_template: Optional[str] = None
) -> list[int]:
    """Token ids of the prompt ending with the template's generation prompt, as training tokenizes it.

    ``chat_template`` is ``tokenizer`` or ``tulu``; None picks the tokenizer's own template when it has one.
    BOS is prepended only when asked (the Tülu template has none)."""
    template = resolve_chat_template(chat_template, tokenizer)
    ids = [tokenizer.bos_id] if add_bos and tokenizer.bos_id is not None else []
    for segment in conversation_segments(tokenizer, template, messages, add_generation_prompt=True,
                                         train_on="last_assistant"):
        ids.extend([tokenizer.eos_id] if segment.is_eos else tokenizer.encode(segment.text))
    return ids


def decode_response(tokenizer, tokens: Sequence[int], length: int, stopped: bool) -> str:
    """The response text: the first ``length`` tokens, without the stop token that ended it."""
    kept = list(tokens[: max(length - 1, 0)] if stopped else tokens[:length])
    return tokenizer.decode(kept)
