"""Model providers behind one small interface; ``get_provider`` maps ``--model`` to one."""

from pipeline.providers.base import Provider
from pipeline.providers.registry import get_provider

__all__ = ["Provider", "get_provider"]
