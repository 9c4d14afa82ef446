"""The settings of one OPUS instance: ``Settings`` (their definition, ``settings.py``) and
``load_settings`` (reading them from the YAML file and the environment, ``loading.py``)."""

from opus.config.loading import load_settings
from opus.config.settings import (
    CONFIG_VARIABLE,
    ENV_PREFIX,
    LOG_LEVELS,
    PROJECT_ROOT,
    ActivityResources,
    Settings,
    SettingsError,
    TokenIssuer,
)

__all__ = [
    "CONFIG_VARIABLE", "ENV_PREFIX", "LOG_LEVELS", "PROJECT_ROOT", "ActivityResources",
    "Settings", "SettingsError", "TokenIssuer", "load_settings",
]
