"""Build a provider from its configuration; each kind is imported only when used."""

from __future__ import annotations

from hermitcrab.config.schema import AnthropicModel, LlamaCppModel, ModelConfig, OpenAIModel, ScriptedModel
from hermitcrab.inference.base import Provider


def build_provider(name: str, config: ModelConfig) -> Provider:
    if isinstance(config, LlamaCppModel):
        from hermitcrab.inference.llama import LlamaCppProvider

        return LlamaCppProvider(name, config)
    if isinstance(config, OpenAIModel):
        from hermitcrab.inference.openai_compat import OpenAICompatProvider

        return OpenAICompatProvider(name, config)
    if isinstance(config, AnthropicModel):
        from hermitcrab.inference.anthropic_messages import AnthropicProvider

        return AnthropicProvider(name, config)
    if isinstance(config, ScriptedModel):
        from hermitcrab.inference.scripted import Call, Say, ScriptedProvider, by_turn_step

        if any(not isinstance(r, str) and r.after for r in config.replies):
            return ScriptedProvider(
                name, [by_turn_step(config.replies)], delay_seconds=config.delay_seconds, record=False
            )
        replies = [
            r if isinstance(r, str) else Say(r.text, tuple(Call(c.name, dict(c.arguments)) for c in r.calls))
            for r in config.replies
        ]
        return ScriptedProvider(name, replies, delay_seconds=config.delay_seconds, record=False)
    raise TypeError(f"unknown model config {type(config).__name__}")
