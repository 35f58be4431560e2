"""Chat prompts: a conversation written into the backbone's own chat template.

An instruct model (SmolLM2-135M-Instruct) was tuned on conversations laid out by its template
("<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n"); asked in that layout it answers, asked in
plain text it merely continues. Templates are Hugging Face style Jinja, run in a sandbox: a template comes
with downloaded weights and is code.
"""

from __future__ import annotations

from collections.abc import Sequence

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from backbone.generate import GenerationConfig, generate_text


def chat_prompt(tokenizer, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
    """The conversation [{"role": "system" | "user" | "assistant", "content": str}, ...] as the prompt text
    the backbone expects, ready for the assistant's turn. The bos token is left out: encoding adds it.

    Raises ValueError when the backbone has no chat template or the template fails."""
    if not tokenizer.chat_template:
        raise ValueError("this backbone carries no chat template (it is not a chat model): import an instruct "
                         "model, e.g. `gptsuite import smollm2`")

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    try:
        text = env.from_string(tokenizer.chat_template).render(
            messages=list(messages), add_generation_prompt=add_generation_prompt,
            bos_token=tokenizer.bos_token or "", eos_token=tokenizer.eos_token)
    except TemplateError as err:
        raise ValueError(f"the backbone's chat template failed: {err}") from err
    if tokenizer.bos_token and text.startswith(tokenizer.bos_token):
        text = text[len(tokenizer.bos_token):]
    return text


def as_user_turn(tokenizer, text: str) -> str:
    """`text` as the user's turn of a one-turn conversation when the backbone has a chat template (an
    instruct model answers it), else the text itself (a base model continues it)."""
    if not tokenizer.chat_template:
        return text
    return chat_prompt(tokenizer, [{"role": "user", "content": text}])


def ask(model, tokenizer, instruction: str, config=None, system: str | None = None) -> str:
    """One user turn -> the assistant's reply (greedy unless `config` says otherwise)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": instruction}]
    return generate_text(model, tokenizer, chat_prompt(tokenizer, messages), config or GenerationConfig())[0].strip()
