"""Reading the settings of ``opus.config.settings.Settings`` from their sources.

Defaults < the YAML file named by ``OPUS_CONFIG`` < ``OPUS_*`` environment variables <
keyword overrides. Every key and variable must name a setting (a typo stops start-up with
the closest setting's name) and every value must validate; both are reported as one
``SettingsError`` that says where each bad value came from. Kept apart from the class so that
the settings' definition reads as one list.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import EnvSettingsSource
from pydantic_settings import SettingsError as _SourceError

from opus.config.settings import (
    CONFIG_VARIABLE,
    ENV_PREFIX,
    ActivityResources,
    Settings,
    SettingsError,
)


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of os.environ."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._environ.items()}

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError as error:  # pydantic-settings wraps it in its own SettingsError
            raise _NotJSON(f"{ENV_PREFIX}{field_name.upper()}: expected JSON text ({error}), "
                           f"got {value!r}") from None


class _NotJSON(ValueError):
    """The value of an environment variable of a structured setting is not JSON."""


def _unknown(keys: Mapping[str, Any], where: str, *, env: bool = False) -> str:
    """A message naming each key that is not a setting, and the closest setting."""
    fields = list(Settings.model_fields)
    problems = []
    for key in keys:
        name = str(key)
        if env:
            name = name[len(ENV_PREFIX):].lower()
        if name in fields:
            continue
        label = str(key)
        close = difflib.get_close_matches(name, fields, n=1)
        if close:
            hint = f"{ENV_PREFIX}{close[0].upper()}" if env else close[0]
            problems.append(f"unknown setting {label!r} in {where}; did you mean {hint!r}?")
        else:
            problems.append(f"unknown setting {label!r} in {where}")
    return "; ".join(problems)


def _validate(values: Mapping[str, Any], origins: Mapping[str, str]) -> Settings:
    """``Settings(**values)``, a ValidationError turned into a SettingsError that names
    each bad setting, where its value came from, and what was expected."""
    try:
        return Settings(**values)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            name = ".".join(str(part) for part in item["loc"]) or "settings"
            top = str(item["loc"][0]) if item["loc"] else ""
            origin = f" (from {origins[top]})" if top in origins else ""
            message = item["msg"]
            if item["type"] == "extra_forbidden" and top == "resources":
                keys = list(ActivityResources.model_fields)
                close = difflib.get_close_matches(str(item["loc"][-1]), keys, n=1)
                message = f"unknown key (known: {', '.join(keys)})"
                if close:
                    message += f"; did you mean {close[0]!r}?"
                problems.append(f"{name}{origin}: {message}")
                continue
            if item["type"] == "extra_forbidden":
                message = "not a setting"
            elif message.startswith("Value error, "):
                message = message[len("Value error, "):]
            problems.append(f"{name}{origin}: {message}, got {item['input']!r}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None


def load_settings(
    environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Build the settings: defaults < YAML (``OPUS_CONFIG``) < environment < ``overrides``.

    ``environ`` (default: ``os.environ``) is the only environment read. Raises
    ``SettingsError`` for an unknown key or variable and for an invalid value."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}

    config_file = environ.get(CONFIG_VARIABLE)
    if config_file:
        try:
            with open(Path(config_file).expanduser(), encoding="utf-8") as stream:
                loaded = yaml.safe_load(stream) or {}
        except FileNotFoundError:
            raise SettingsError(f"{CONFIG_VARIABLE}: no such file {config_file}") from None
        except (OSError, yaml.YAMLError) as error:
            raise SettingsError(f"{config_file}: cannot read the settings: {error}") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"{config_file}: expected a mapping of settings")
        unknown = _unknown(loaded, config_file)
        if unknown:
            raise SettingsError(unknown)
        values.update(loaded)
        origins.update(dict.fromkeys(loaded, config_file))

    variables = {name: value for name, value in environ.items()
                 if name.upper().startswith(ENV_PREFIX) and name.upper() != CONFIG_VARIABLE}
    unknown = _unknown({name.upper(): v for name, v in variables.items()}, "the environment",
                       env=True)
    if unknown:
        raise SettingsError(unknown)
    try:
        from_environment = _Environment(variables)()
    except _SourceError as error:  # JSON text of a structured setting
        cause = error.__cause__
        raise SettingsError(str(cause if isinstance(cause, _NotJSON) else error)) from None
    values.update(from_environment)
    origins.update({name: f"{ENV_PREFIX}{name.upper()}" for name in from_environment})

    unknown = _unknown(overrides, "the overrides")
    if unknown:
        raise SettingsError(unknown)
    values.update(overrides)
    origins.update(dict.fromkeys(overrides, "an override"))
    return _validate(values, origins)
