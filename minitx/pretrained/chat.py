"""The chat template: how an instruct model was taught to read a conversation.

An instruct model is a language model fine-tuned on conversations written out in
one fixed way, for SmolLM2:

    <|im_start|>system
    You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
    <|im_start|>user
    What is the capital of France?<|im_end|>
    <|im_start|>assistant

and it answers by continuing that text until it writes <|im_end|>. The template
(Jinja, shipped with the model) turns a list of messages into that text. The
markers are special tokens, one id each; the messages themselves are always
encoded as plain text, so a "<|im_end|>" typed in a message cannot end a turn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from ..tokenizer import Tokenizer

PLACEHOLDER = "\ue000{}\ue001"        # private-use characters: no template or message writes them


class ChatTemplate:
    """A model's chat template, rendered in Jinja's sandbox (it comes with a downloaded file)."""

    def __init__(self, source: str, tokenizer: Tokenizer):
        from jinja2 import TemplateError
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise TemplateError(message)

        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        environment.globals.update(raise_exception=raise_exception,
                                   strftime_now=lambda fmt: datetime.now().strftime(fmt))
        try:
            self.template = environment.from_string(source)
        except TemplateError as error:
            raise ValueError(f"the model's chat template does not parse: {error}") from None
        self.source, self.tokenizer = source, tokenizer
        specials = sorted(tokenizer.backend.get_added_tokens_decoder().values(), key=lambda t: -len(t.content))
        self.special_ids = {t.content: tokenizer.token_to_id(t.content) for t in specials if t.special}
        self._special = re.compile("(" + "|".join(map(re.escape, self.special_ids)) + ")") if self.special_ids else None

    def render(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """The conversation as the model reads it, ending where the assistant's answer begins."""
        from jinja2 import TemplateError

        for message in messages:
            if not isinstance(message, dict) or not isinstance(message.get("content"), str) \
                    or not isinstance(message.get("role"), str):
                raise ValueError(f"a chat message is {{'role': ..., 'content': ...}} with two strings, "
                                 f"not {message!r}.")
        try:
            return self.template.render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                        bos_token="", eos_token=self.tokenizer.specials.get("eos", ""))
        except TemplateError as error:
            raise ValueError(f"the model's chat template refused these messages: {error}") from None

    def encode(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> list[int]:
        """The ids of render(messages): the template's markers as their special ids, everything
        else, the messages included, as plain text."""
        stand_ins = [dict(m, content=PLACEHOLDER.format(i)) for i, m in enumerate(messages)]
        marked = self.render(stand_ins, add_generation_prompt)
        pieces = self._special.split(marked) if self._special else [marked]
        ids = []
        for piece in pieces:
            if piece in self.special_ids:
                ids.append(self.special_ids[piece])
            elif piece:
                text = re.sub(PLACEHOLDER.format(r"(\d+)"), lambda m: messages[int(m.group(1))]["content"], piece)
                ids += self.tokenizer.encode(text).ids
        return ids
