"""The Tülu chat template, rendered exactly, and any tokenizer's own jinja template, split into trained spans.

A rendering is a list of ``Segment``s: text marked trained or not, and the EOS token as its own segment.
Tokenizing segment by segment puts the label boundaries exactly at the segment edges.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence

from data_pipeline.errors import DataError

# The same template as a jinja string, for tokenizer_config.json exports and for transformers' apply_chat_template.
TULU_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% if not loop.last %}{{ '<|assistant|>\n' + message['content'] + eos_token + '\n' }}"
    "{% else %}{{ '<|assistant|>\n' + message['content'] + eos_token }}{% endif %}"
    "{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    "{% endfor %}"
)

GENERATION_PROMPT = "<|assistant|>\n"


@dataclass(frozen=True)
class Segment:
    """A run of rendered text (or the EOS token when ``is_eos``) and whether its tokens are trained."""

    text: str
    trained: bool
    is_eos: bool = False


Messages = Sequence[dict]


def trained_message_indices(messages: Messages, train_on: str) -> set[int]:
    """Indices of the assistant messages whose content is trained: all of them, or only the last."""
    assistant = [i for i, message in enumerate(messages) if message["role"] == "assistant"]
    if train_on == "last_assistant":
        return set(assistant[-1:])
    return set(assistant)


def merge_segments(segments: Sequence[Segment]) -> list[Segment]:
    """Join neighbouring text segments with the same trained flag (fewer pieces, fewer tokenizer boundaries)."""
    merged: list[Segment] = []
    for segment in segments:
        if not segment.text:
            continue
        previous = merged[-1] if merged else None
        if previous and not previous.is_eos and not segment.is_eos and previous.trained == segment.trained:
            merged[-1] = Segment(previous.text + segment.text, segment.trained)
        else:
            merged.append(segment)
    return merged


def tulu_segments(
    messages: Messages, eos_token: str, add_generation_prompt: bool = False, train_on: str = "all_assistant"
) -> list[Segment]:
    """The Tülu template (RECIPE.md section 2) as segments; trained = assistant content and its EOS."""
    trained = trained_message_indices(messages, train_on)
    segments = []
    for index, message in enumerate(messages):
        role, content = message["role"], message["content"]
        if role in ("system", "user"):
            segments.append(Segment(f"<|{role}|>\n{content}\n", False))
        elif role == "assistant":
            is_trained = index in trained
            segments.append(Segment("<|assistant|>\n", False))
            segments.append(Segment(content, is_trained))
            segments.append(Segment(eos_token, is_trained, is_eos=True))
            if index != len(messages) - 1:
                segments.append(Segment("\n", False))
        else:
            raise ValueError(f"unknown role {role!r}")
    if add_generation_prompt:
        segments.append(Segment(GENERATION_PROMPT, False))
    return merge_segments(segments)


def render_text(segments: Sequence[Segment]) -> str:
    return "".join(segment.text for segment in segments)


def render_tulu(messages: Messages, eos_token: str, add_generation_prompt: bool = False) -> str:
    """The exact Tülu-template text of a conversation."""
    return render_text(tulu_segments(messages, eos_token, add_generation_prompt))


class JinjaChatTemplate:
    """A tokenizer's own jinja chat template, rendered the way ``transformers`` does."""

    def __init__(self, template: str, eos_token: str, bos_token: Optional[str] = None):
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise DataError(f"the chat template refused the conversation: {message}")

        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = raise_exception
        self._template = environment.from_string(template)
        self.eos_token, self.bos_token = eos_token, bos_token or ""

    def render(self, messages: Messages, add_generation_prompt: bool = False) -> str:
        return self._template.render(
            messages=list(messages), add_generation_prompt=add_generation_prompt,
            eos_token=self.eos_token, bos_token=self.bos_token,
        )

    def segments(
        self, messages: Messages, add_generation_prompt: bool = False, train_on: str = "all_assistant"
    ) -> list[Segment]:
        """Split the rendering into trained spans by rendering growing prefixes of the conversation.

        The trained span of assistant message i is render(messages[:i+1]) minus
        render(messages[:i], add_generation_prompt=True); this needs a template whose rendering of a
        prefix is a prefix of the rendering of the whole.
        """
        trained = trained_message_indices(messages, train_on)
        segments, done = [], ""
        for index in sorted(trained):
            before = self.render(messages[:index], add_generation_prompt=True)
            through = self.render(messages[: index + 1])
            if not before.startswith(done) or not through.startswith(before):
                raise DataError(
                    "the tokenizer's chat template does not render a conversation's beginning as a prefix of the "
                    "whole, so trained spans cannot be located; use data.chat_template=tulu"
                )
            segments.append(Segment(before[len(done):], False))
            segments.append(Segment(through[len(before):], True))
            done = through
        full = self.render(messages, add_generation_prompt=add_generation_prompt)
        if not full.startswith(done):
            raise DataError("the tokenizer's chat template renders the last turn differently; use chat_template=tulu")
        segments.append(Segment(full[len(done):], False))
        return merge_segments(segments)


CHAT_TEMPLATE_CHOICES = ("tokenizer", "tulu")


def resolve_chat_template(choice: Optional[str], tokenizer) -> str:
    """``tokenizer`` or ``tulu``: the choice made, or by default the tokenizer's own template when it has one."""
    if choice is None:
        return "tokenizer" if tokenizer.chat_template else "tulu"
    if choice not in CHAT_TEMPLATE_CHOICES:
        raise DataError(f"unknown chat template {choice!r}; use one of {', '.join(CHAT_TEMPLATE_CHOICES)}")
    if choice == "tokenizer" and not tokenizer.chat_template:
        raise DataError("the chat template 'tokenizer' was asked for but the tokenizer has none; use 'tulu'")
    return choice


@functools.lru_cache(maxsize=8)
def _compiled_jinja(template: str, eos_token: str, bos_token: Optional[str]) -> JinjaChatTemplate:
    return JinjaChatTemplate(template, eos_token, bos_token)


def conversation_segments(
    tokenizer, chat_template: str, messages: Messages, add_generation_prompt: bool = False,
    train_on: str = "all_assistant",
) -> list[Segment]:
    """The segments of ``messages`` under the named template (``tokenizer`` or ``tulu``), as training splits them."""
    if chat_template == "tokenizer":
        jinja = _compiled_jinja(tokenizer.chat_template, tokenizer.eos_token, tokenizer.bos_token)
        return jinja.segments(messages, add_generation_prompt, train_on)
    return tulu_segments(messages, tokenizer.eos_token, add_generation_prompt, train_on)
