"""Reading settings files: YAML text to a mapping, with errors that name the file (fitting and training configs)."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

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


def read_settings(config: Any, default: str, folder: str, what: str) -> tuple[dict, str]:
    """The mapping and the source name of a settings argument that names a file: None (the shipped
    ``default``), a shipped name (``configs/<folder>/<name>.yaml``; ``folder`` may be ``""``) or a ``.yaml``
    path (anything with a folder part or a YAML suffix, or a Path).

    Raises:
        FileNotFoundError: a path that does not exist. ValueError: an unknown shipped name, invalid YAML.
    """
    name = default if config is None else str(config)
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or len(path.parts) > 1 or isinstance(config, Path):
        if not path.is_file():
            raise FileNotFoundError(f"{what} not found: {path}")
        return parse_mapping(path.read_text(), str(path)), str(path)
    shipped = resources.files("fitlib.configs").joinpath(*(folder.split("/") if folder else []), f"{name}.yaml")
    where = f"configs/{folder + '/' if folder else ''}"
    if not shipped.is_file():
        raise ValueError(f"unknown {what} {name!r}: not in {where} and not a .yaml path")
    source = f"{where}{name}.yaml"
    return parse_mapping(shipped.read_text(), source), source
