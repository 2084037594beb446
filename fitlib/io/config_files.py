"""Reading settings files: YAML text to a mapping, with errors that name the file (fitting and training configs)."""
from __future__ import annotations

import yaml


def parse_mapping(text: str, source: str) -> dict:
    """The mapping a YAML document holds (``yaml.safe_load``: no code, no custom tags).

    Raises:
        ValueError naming ``source`` for invalid YAML or a document that is not a mapping.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{source} must hold a mapping of settings")
    return data
