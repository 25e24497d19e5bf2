"""YAML in and out of the prompt API (export and import), beside JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer


class YAMLRenderer(BaseRenderer):
    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Mapping[str, Any] | None = None
    ) -> bytes:
        if data is None:
            return b""
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False).encode()


class YAMLParser(BaseParser):
    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        from rest_framework.exceptions import ParseError

        try:
            return yaml.safe_load(stream.read().decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ParseError(f"YAML parse error: {exc}") from None


class TextYAMLParser(YAMLParser):
    media_type = "text/yaml"
