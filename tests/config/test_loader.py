"""Config loading: precedence and refusals that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from trustchain.config import ConfigError, default_config_path, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_the_shipped_configs_load() -> None:
    default = load_config()
    assert default.runtime.control_socket == Path("var/trustchain.sock")
    assert default.hsm.module == "softhsm2"
    production = load_config(default_config_path().with_name("production.toml"))
    assert production.hsm.module.endswith("libcloudhsm_pkcs11.so")
    assert production.runtime.log_json is True


def test_precedence_is_defaults_file_environment_flags(tmp_path: Path) -> None:
    path = write(tmp_path, '[runtime]\nlog_level = "DEBUG"\ndrain_timeout_s = 7\n')
    assert load_config(path, env={}).runtime.log_level == "DEBUG"
    assert load_config(path, env={}).runtime.request_timeout_s == 10.0  # default
    env = {"TRUSTCHAIN_RUNTIME__LOG_LEVEL": "ERROR", "TRUSTCHAIN_RUNTIME__DRAIN_TIMEOUT_S": "9"}
    assert load_config(path, env=env).runtime.log_level == "ERROR"
    assert load_config(path, env=env).runtime.drain_timeout_s == 9.0
    flags = {"runtime.log_level": "WARNING"}
    assert load_config(path, env=env, overrides=flags).runtime.log_level == "WARNING"


def test_the_hsm_pin_variable_is_not_mistaken_for_an_override(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert load_config(path, env={"TRUSTCHAIN_HSM_PIN": "1234"}).hsm.pin_env == "TRUSTCHAIN_HSM_PIN"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[runtime]\nlog_levle = 'INFO'\n", "unknown key runtime.log_levle; runtime allows:"),
        ("[runtim]\n", "unknown key runtim;"),
        ("[runtime]\nlog_level = 'LOUD'\n", "runtime.log_level must be one of TRACE"),
        ("[runtime]\ndrain_timeout_s = -1\n", "runtime.drain_timeout_s must be at least 0"),
        ("[runtime]\ndrain_timeout_s = 'soon'\n", "runtime.drain_timeout_s must be a number"),
        ("[supervision]\nmax_restarts = 1.5\n", "supervision.max_restarts must be an integer"),
        ("[runtime]\nlog_json = 'yes'\n", "runtime.log_json must be true or false"),
        ("[hsm.keys]\nca = 'dsa-1024'\n", "hsm.keys.ca must be one of ec-p256"),
        ("runtime = 3\n", "runtime must be a table"),
        ("[runtime\n", "is not valid TOML"),
        ("[trust]\nvdf_modulus = '12345'\n", "trust.vdf_modulus must be a decimal RSA modulus"),
        ("[trust]\nvalidators = 3\n", "trust.validators must be at least 4"),
        (
            "[resolver]\nupstream_quorum = 2\nupstreams = ['udp://[::1]:53']\n",
            "is more than the 1 resolver.upstreams: no answer could be accepted",
        ),
        (
            "[resolver]\nupstreams = ['udp://[::1]:53']\nupstream_timeout_s = 10.0\n",
            "resolver.upstream_timeout_s must be under runtime.request_timeout_s",
        ),
    ],
)
def test_bad_values_are_refused_with_the_dotted_key(tmp_path: Path, text: str, message: str):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config(write(tmp_path, text), env={})


def test_a_renamed_key_is_refused_with_its_new_name(tmp_path: Path) -> None:
    old = "[http]\nhealthy_checkpoint_age_s = 5.0\n"
    message = r"http\.healthy_checkpoint_age_s was renamed http\.max_sth_age_s"
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, old), env={})
    with pytest.raises(ConfigError, match=message):  # from the environment too
        load_config(write(tmp_path, ""), env={"TRUSTCHAIN_HTTP__HEALTHY_CHECKPOINT_AGE_S": "5"})
    new = load_config(write(tmp_path, "[http]\nmax_sth_age_s = 7.0\n"), env={})
    assert new.http.max_sth_age_s == 7.0


def test_a_bad_environment_value_names_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"supervision\.period_s must be at least"):
        load_config(write(tmp_path, ""), env={"TRUSTCHAIN_SUPERVISION__PERIOD_S": "0"})


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml")
