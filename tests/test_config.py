"""Settings: defaults < YAML file (OPUS_CONFIG) < OPUS_* environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from opus.config import SettingsError, load_settings


def test_defaults_run_without_any_configuration(tmp_path: Path) -> None:
    settings = load_settings({})
    assert settings.manager == "local"
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_database_url.endswith("/var/opus.sqlite")
    assert settings.effective_concurrency >= 1


def test_environment_overrides_yaml_which_overrides_defaults(tmp_path: Path) -> None:
    config = tmp_path / "opus.yaml"
    config.write_text("wait_max: 10\nmanager: slurm\ndata_dir: /srv/opus\n")
    settings = load_settings({"OPUS_CONFIG": str(config), "OPUS_WAIT_MAX": "5",
                              "OPUS_BASE_URL": "https://opus.example.org/"})
    assert settings.wait_max == 5.0
    assert settings.manager == "slurm"
    assert settings.data_dir == Path("/srv/opus")
    assert settings.base_url == "https://opus.example.org"


@pytest.mark.parametrize("environ, message", [
    ({"OPUS_WAIT_MAX": "soon"}, "wait_max"),
    ({"OPUS_MANAGER": "condor"}, "manager"),
    ({"OPUS_DESTRUCTION_POLICY": "shred"}, "destruction_policy"),
])
def test_bad_settings_are_named(environ: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ)
