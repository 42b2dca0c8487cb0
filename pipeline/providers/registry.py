"""``--model`` forms -> provider classes, imported lazily."""

from __future__ import annotations

from typing import Any

from pipeline.core.errors import ProviderError
from pipeline.providers.base import Provider

FORMS = "local, local:/path/to/model.gguf, openai:<model-name>"


def get_provider(model: str, **options: Any) -> Provider:
    kind, _, name = model.partition(":")
    if kind == "local":
        from pipeline.providers.local import LocalProvider

        return LocalProvider(model_path=name or None, **options)
    if kind == "openai" and name:
        try:
            from pipeline.providers.openai_compat import OpenAIProvider
        except ImportError as exc:
            raise ProviderError(
                f"the openai provider cannot be loaded ({exc.name or exc} is missing)",
                "run `pip install -e .` in the project (or `pip install openai==3.3.0`)",
            ) from exc

        provider: Provider = OpenAIProvider(name, **options)
        return provider
    raise ProviderError(f"unknown model {model!r}", f"valid forms: {FORMS}")
