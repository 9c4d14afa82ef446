"""Settings: defaults < YAML file (OPUS_CONFIG) < OPUS_* environment < overrides; unknown
keys and bad values refused with the setting's name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from opus.config import PROJECT_ROOT, ActivityResources, Settings, SettingsError, load_settings


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


# ------------------------------------------------------------ unknown keys, typed fields


def test_unknown_yaml_key_is_refused_with_the_closest_setting(tmp_path: Path) -> None:
    config = tmp_path / "opus.yaml"
    config.write_text("wait_maxx: 5\n")
    with pytest.raises(SettingsError) as caught:
        load_settings({"OPUS_CONFIG": str(config)})
    assert str(caught.value) == (f"unknown setting 'wait_maxx' in {config}; "
                                 "did you mean 'wait_max'?")
    config.write_text("slurm_partiton: gpu\n")
    with pytest.raises(SettingsError, match="did you mean 'slurm_partition'"):
        load_settings({"OPUS_CONFIG": str(config)})
    config.write_text("extra: {}\n")  # the former catch-all is gone too
    with pytest.raises(SettingsError, match="unknown setting 'extra'"):
        load_settings({"OPUS_CONFIG": str(config)})


def test_unknown_environment_variable_is_refused_with_the_closest_setting() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"OPUS_WAIT_MAXX": "3"})
    assert str(caught.value) == ("unknown setting 'OPUS_WAIT_MAXX' in the environment; "
                                 "did you mean 'OPUS_WAIT_MAX'?")
    with pytest.raises(SettingsError, match="OPUS_REQUIRE_SLURM"):  # a test-harness switch
        load_settings({"OPUS_REQUIRE_SLURM": "1"})
    # OPUS_CONFIG names the file; other variables are not ours
    assert load_settings({"OPUS_CONFIG": "", "PATH": "/bin", "OPUSX": "1"}).manager == "local"


def test_only_the_given_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.upper().startswith("OPUS_")]:
        monkeypatch.delenv(name)  # CI's OPUS_REQUIRE_* switches
    monkeypatch.setenv("OPUS_WAIT_MAX", "7")
    assert load_settings().wait_max == 7.0  # no mapping: os.environ
    monkeypatch.setenv("OPUS_WAIT_MAXX", "7")
    assert load_settings({}).wait_max == 60.0
    assert Settings().wait_max == 60.0  # built in code: no environment at all
    assert Settings().replace(port=1).wait_max == 60.0
    with pytest.raises(SettingsError, match="OPUS_WAIT_MAXX"):
        load_settings()


def test_every_setting_is_documented() -> None:
    assert [name for name, f in Settings.model_fields.items() if not f.description] == []
    assert [name for name, f in ActivityResources.model_fields.items()
            if not f.description] == []


def test_resources_and_sbatch_args_are_typed(tmp_path: Path) -> None:
    config = tmp_path / "opus.yaml"
    config.write_text('resources:\n  "*": {partition: short}\n'
                      "  gammapy_maps: {cpus: 4, memory: 8000}\n"
                      "slurm_sbatch_args: --qos=normal\nslurm_login_environment: false\n"
                      "provenance_templates_dir: ~/templates\n")
    settings = load_settings({"OPUS_CONFIG": str(config)})
    assert settings.resources == {"*": ActivityResources(partition="short"),
                                  "gammapy_maps": ActivityResources(cpus=4, memory=8000)}
    assert settings.resources["gammapy_maps"].account is None
    assert settings.slurm_sbatch_args == ("--qos=normal",)  # one string: one option
    assert settings.slurm_login_environment is False
    assert settings.provenance_templates_dir == Path("~/templates").expanduser()

    defaults = load_settings({})
    assert defaults.resources == {} and defaults.slurm_sbatch_args == ()
    assert defaults.slurm_login_environment is None
    assert defaults.provenance_templates_dir == PROJECT_ROOT / "provenance_templates"

    settings = load_settings({"OPUS_RESOURCES": '{"echo": {"memory": 100}}',
                              "OPUS_SLURM_SBATCH_ARGS": '["--hold", "--qos=low"]',
                              "OPUS_SLURM_LOGIN_ENVIRONMENT": "true"})
    assert settings.resources == {"echo": ActivityResources(memory=100)}
    assert settings.slurm_sbatch_args == ("--hold", "--qos=low")
    assert settings.slurm_login_environment is True


@pytest.mark.parametrize("yaml_text, message", [
    ("resources:\n  echo: {cpu: 2}\n", r"resources\.echo\.cpu.*did you mean 'cpus'"),
    ("resources:\n  echo: {cpus: 0}\n", r"resources\.echo\.cpus"),
    ("resources:\n  echo: {memory: lots}\n", r"resources\.echo\.memory"),
    ("resources: [echo]\n", "resources"),
    ("slurm_sbatch_args: {qos: normal}\n", "slurm_sbatch_args"),
    ("slurm_login_environment: maybe\n", "slurm_login_environment"),
    ("- wait_max\n", "expected a mapping"),
])
def test_bad_yaml_values_are_named(tmp_path: Path, yaml_text: str, message: str) -> None:
    config = tmp_path / "opus.yaml"
    config.write_text(yaml_text)
    with pytest.raises(SettingsError, match=message):
        load_settings({"OPUS_CONFIG": str(config)})


def test_bad_json_in_the_environment_is_named() -> None:
    with pytest.raises(SettingsError, match="OPUS_RESOURCES: expected JSON"):
        load_settings({"OPUS_RESOURCES": "echo: {cpus: 2}"})
    with pytest.raises(SettingsError, match="OPUS_SLURM_SBATCH_ARGS: expected JSON"):
        load_settings({"OPUS_SLURM_SBATCH_ARGS": "--hold"})


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="OPUS_CONFIG: no such file"):
        load_settings({"OPUS_CONFIG": str(tmp_path / "none.yaml")})


def test_overrides_win_and_are_checked(tmp_path: Path) -> None:
    settings = load_settings({"OPUS_WAIT_MAX": "5"}, wait_max=1, data_dir=tmp_path)
    assert settings.wait_max == 1.0 and settings.data_dir == tmp_path.resolve()
    with pytest.raises(SettingsError, match="did you mean 'wait_max'"):
        load_settings({}, wait_mx=1)


def test_settings_are_immutable_and_replace_validates() -> None:
    settings = load_settings({})
    with pytest.raises(ValidationError):
        settings.port = 9  # type: ignore[misc]
    changed = settings.replace(port=9001, base_url="https://x.org/")
    assert (changed.port, changed.base_url, settings.port) == (9001, "https://x.org", 8000)
    assert changed.data_dir == settings.data_dir
    with pytest.raises(SettingsError, match="port"):
        settings.replace(port="high")
    with pytest.raises(SettingsError, match="manager"):
        settings.replace(manager="condor")
    with pytest.raises(SettingsError, match="unknown setting 'extra'"):
        settings.replace(extra={})


# ------------------------------------------------------------ opus serve --host/--port


def test_port_derives_base_url_when_none_was_set() -> None:
    settings = load_settings({})
    assert not settings.base_url_is_explicit
    served = settings.listening_on(host="0.0.0.0", port=9000)
    assert (served.host, served.port, served.base_url) == ("0.0.0.0", 9000,
                                                          "http://0.0.0.0:9000")
    assert settings.listening_on(port=9000).base_url == "http://127.0.0.1:9000"
    # no --port: the base URL stays what the settings say
    assert settings.listening_on(host="0.0.0.0").base_url == "http://127.0.0.1:8000"
    assert settings.listening_on() is settings


@pytest.mark.parametrize("source", ["yaml", "env", "override"])
def test_port_keeps_an_explicit_base_url(tmp_path: Path, source: str) -> None:
    config = tmp_path / "opus.yaml"
    config.write_text("base_url: https://opus.example.org/uws/\n")
    settings = {
        "yaml": lambda: load_settings({"OPUS_CONFIG": str(config)}),
        "env": lambda: load_settings({"OPUS_BASE_URL": "https://opus.example.org/uws/"}),
        "override": lambda: load_settings({}, base_url="https://opus.example.org/uws"),
    }[source]()
    assert settings.base_url_is_explicit
    served = settings.listening_on(port=9000)
    assert served.port == 9000
    assert served.base_url == "https://opus.example.org/uws"


def test_yaml_base_url_equal_to_the_default_is_still_explicit(tmp_path: Path) -> None:
    config = tmp_path / "opus.yaml"
    config.write_text("base_url: http://127.0.0.1:8000\n")
    settings = load_settings({"OPUS_CONFIG": str(config)})
    assert settings.listening_on(port=9000).base_url == "http://127.0.0.1:8000"
