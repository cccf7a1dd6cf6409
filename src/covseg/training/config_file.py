"""``--config FILE``: training settings in a TOML or YAML file, with the TrainConfig field names.

Example (``my.toml``)::

    recipe = "reference"
    epochs = 300
    lr = 3e-5
    image_size = 256
    data = "data/medseg"

    [dataset_options]
    count = 40

The same in YAML (``my.yaml``) is ``epochs: 300``, ``lr: 3e-5``, ... Any option given on the command
line overrides the file; the file overrides the recipe. Keys, types and bounds are checked by
:meth:`covseg.training.config.TrainConfig.resolve`; this module only reads the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from covseg.core.errors import CovsegError
from covseg.files import describe_os_error, one_line

SUFFIXES = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML"}
MAX_BYTES = 1 << 20
"""A config file holds a few dozen settings; anything larger is not one."""


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings table of a TOML or YAML file; one-line errors name the file."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise CovsegError(f"--config {path}: expected a .toml, .yaml or .yml file")
    try:
        if path.is_dir():
            raise CovsegError(f"--config {path} is a folder; give a .toml or .yaml file")
        if path.stat().st_size > MAX_BYTES:
            raise CovsegError(f"--config {path} is over {MAX_BYTES >> 20} MiB; it is not a config file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise CovsegError(f"--config {path}: no such file") from None
    except OSError as error:
        raise CovsegError(f"--config {path}: {describe_os_error(error, path, 'read')}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CovsegError(f"{path} is not UTF-8 text") from None
    values = _parse_toml(text, path) if kind == "TOML" else _parse_yaml(text, path)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise CovsegError(f"{path} holds a {type(values).__name__}, not a table of settings")
    for key in values:
        if not isinstance(key, str):
            raise CovsegError(f"{path}: the key {key!r} is not a setting name")
    return values


def _parse_toml(text: str, path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CovsegError(f"{path} is not valid TOML: {one_line(error)}") from None


def _yaml_loader():
    """PyYAML's safe loader, also reading ``1e-5`` as a number (YAML 1.1 wants ``1.0e-5``)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    float_pattern = re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)"
        r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", float_pattern, list("-+0123456789."))
    return Loader


def _parse_yaml(text: str, path: Path) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.YAMLError as error:
        raise CovsegError(f"{path} is not valid YAML: {one_line(error)}") from None
