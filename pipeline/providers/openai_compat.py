"""OpenAI, or any server that speaks OpenAI's chat-completions API (llama_cpp.server, vLLM, ...).

``--model openai:<name>`` with ``--base-url URL`` (or ``OPENAI_BASE_URL``; default OpenAI's).
The key is read from ``OPENAI_API_KEY`` and only handed to the HTTP client: it is never
logged, printed or stored, and is masked in any error text. A server on this machine or a
private network may run without a key.

The openai client's own retries are off (``max_retries=0``): ``pipeline.retry`` retries,
so every attempt is seen and logged.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import openai
from openai.types.chat import ChatCompletion

from pipeline.core.errors import ProviderError
from pipeline.providers.base import Provider, as_json_object_format
from pipeline.providers.local import fold_system_messages

OPENAI_URL = "https://api.openai.com/v1"
ResponseFormat = Literal["json_schema", "json_object"]
RESPONSE_FORMATS: tuple[str, ...] = ("json_schema", "json_object")
NO_KEY = "no-key"  # sent to local servers when OPENAI_API_KEY is unset; they ignore it


def is_local_host(host: str) -> bool:
    """localhost, a loopback address or a private-network address."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local


def public_url(url: str) -> str:
    """``url`` without any ``user:password@`` part: safe to log and store."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class OpenAIProvider(Provider):
    remote = True

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        response_format: str = "json_schema",
        fold_system: bool = False,
        **_: Any,
    ) -> None:
        super().__init__()
        self.name = name
        url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProviderError(
                f"base URL {public_url(url)!r} is not an http(s) URL",
                "pass --base-url like http://127.0.0.1:8000/v1 (or set OPENAI_BASE_URL)",
            )
        if response_format not in RESPONSE_FORMATS:
            raise ProviderError(
                f"unknown response format {response_format!r}",
                f"use one of: {', '.join(RESPONSE_FORMATS)} (json_object for llama.cpp servers)",
            )
        self.base_url = url
        self.url = public_url(url)
        key = os.environ.get("OPENAI_API_KEY", "").strip()
        if not key:
            if not is_local_host(parts.hostname):
                raise ProviderError(
                    f"OPENAI_API_KEY is not set; {self.url} needs an API key",
                    "export OPENAI_API_KEY=<your key>, or pass --base-url for a local server that needs none",
                )
            key = NO_KEY
        self._key = key
        self.model_id = f"openai:{name}"
        self.response_format = response_format
        self.fold_system = fold_system
        self.settings = {"response_format": response_format, "fold_system": fold_system}
        self._client: openai.OpenAI | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenAIProvider({self.name!r}, base_url={self.url!r})"

    @property
    def client(self) -> openai.OpenAI:
        with self._lock:  # one client (one connection pool) shared by the worker threads
            if self._client is None:
                self._client = openai.OpenAI(
                    api_key=self._key,
                    base_url=self.base_url,
                    max_retries=0,
                    timeout=60.0,  # each request passes its own (RetryPolicy.timeout)
                )
            return self._client

    def describe(self) -> dict[str, Any]:
        return {"base_url": self.url, **self.settings}

    def redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key != NO_KEY else text

    def create(self, **kwargs: Any) -> ChatCompletion:
        kwargs["model"] = self.name
        if self.fold_system and "messages" in kwargs:
            kwargs["messages"] = fold_system_messages(kwargs["messages"])
        if self.response_format == "json_object":
            kwargs = as_json_object_format(kwargs)
        try:
            result: ChatCompletion = self.client.chat.completions.create(**kwargs)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise ProviderError(
                f"{self.url} refused the API key (HTTP {exc.status_code})",
                "set OPENAI_API_KEY to a valid key for this server",
            ) from None
        except openai.NotFoundError:
            raise ProviderError(
                f"{self.url}/chat/completions answered 404 for model {self.name!r}",
                "check the model name and that --base-url ends in /v1",
            ) from None
        return result

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
