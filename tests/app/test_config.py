"""Settings: defaults, XOR_* variables, and clear failures (exit 2) for invalid values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import LogFormat, Settings, load_settings
from app.errors import ConfigError
from tests.support import REPO


def test_defaults() -> None:
    settings = load_settings()
    assert settings.model_dir == Path("models/xor")
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.poll_interval_seconds == 2
    assert settings.max_request_pairs == 10_000
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.log_level == "INFO"
    assert settings.log_format is LogFormat.AUTO
    assert settings.shutdown_timeout_seconds == 20
    assert settings.shutdown_delay_seconds == 0
    assert settings.model_name == "xor"
    assert settings.loaded_versions == 2
    assert settings.batching is True
    assert settings.batch_max_pairs == 256
    assert settings.access_log is True
    assert settings.deprecations == ()


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XOR_MODEL_DIR", "/srv/models")
    monkeypatch.setenv("XOR_PORT", "9000")
    monkeypatch.setenv("XOR_POLL_INTERVAL_SECONDS", "0.5")
    monkeypatch.setenv("XOR_LOG_LEVEL", "debug")
    monkeypatch.setenv("XOR_LOG_FORMAT", "TEXT")
    monkeypatch.setenv("XOR_BATCHING", "false")
    monkeypatch.setenv("XOR_BATCH_MAX_PAIRS", "64")
    monkeypatch.setenv("XOR_MAX_REQUEST_PAIRS", "500")
    monkeypatch.setenv("XOR_ACCESS_LOG", "false")
    # The training CLI's variables share the prefix and must not disturb the server.
    monkeypatch.setenv("XOR_TRAIN_STEPS", "5")
    settings = load_settings()
    assert settings.model_dir == Path("/srv/models")
    assert settings.port == 9000
    assert settings.poll_interval_seconds == 0.5
    assert settings.log_level == "DEBUG"
    assert settings.log_format is LogFormat.TEXT
    assert settings.batching is False
    assert settings.batch_max_pairs == 64
    assert settings.max_request_pairs == 500
    assert settings.access_log is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("XOR_PORT", "http"),
        ("XOR_PORT", "70000"),
        ("XOR_PORT", "0"),
        ("XOR_POLL_INTERVAL_SECONDS", "0"),
        ("XOR_POLL_INTERVAL_SECONDS", "nan"),
        ("XOR_MAX_REQUEST_PAIRS", "-1"),
        ("XOR_MAX_BODY_BYTES", "1MB"),
        ("XOR_LOG_LEVEL", "LOUD"),
        ("XOR_LOG_FORMAT", "xml"),
        ("XOR_SHUTDOWN_TIMEOUT_SECONDS", "0"),
        ("XOR_SHUTDOWN_DELAY_SECONDS", "-1"),
        ("XOR_SHUTDOWN_DELAY_SECONDS", "301"),
        ("XOR_SHUTDOWN_DELAY_SECONDS", "5s"),
        ("XOR_SHUTDOWN_DELAY_SECONDS", "inf"),
        ("XOR_LOADED_VERSIONS", "0"),
        ("XOR_BATCHING", "maybe"),
        ("XOR_ACCESS_LOG", "sometimes"),
        ("XOR_BATCH_MAX_PAIRS", "0"),
        ("XOR_REQUEST_TIMEOUT_SECONDS", "0"),
        ("XOR_MAX_HEADER_BYTES", "0"),
        ("XOR_MODEL_NAME", "xor:predict"),
        ("XOR_MODEL_NAME", "a/b"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name) as raised:
        load_settings()
    assert repr(value) in str(raised.value)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("XOR_MAX_BATCH_SIZE", "XOR_MAX_REQUEST_PAIRS", "max_request_pairs"),
        ("XOR_BATCH_MAX_SIZE", "XOR_BATCH_MAX_PAIRS", "batch_max_pairs"),
    ],
)
def test_an_old_name_still_works_with_one_deprecation_notice(
    monkeypatch: pytest.MonkeyPatch, old: str, new: str, field: str
) -> None:
    monkeypatch.setenv(old, "42")
    settings = load_settings()
    assert getattr(settings, field) == 42
    assert settings.deprecations == (f"{old} is deprecated: rename it {new} (same meaning)",)


def test_old_names_are_read_in_any_case_like_every_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("xor_batch_max_size", "8")
    settings = load_settings()
    assert settings.batch_max_pairs == 8
    (notice,) = settings.deprecations
    assert notice.startswith("XOR_BATCH_MAX_SIZE is deprecated")


def test_old_and_new_name_alike_is_only_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XOR_MAX_BATCH_SIZE", "500")
    monkeypatch.setenv("XOR_MAX_REQUEST_PAIRS", "500")
    settings = load_settings()
    assert settings.max_request_pairs == 500
    assert settings.deprecations == (
        "XOR_MAX_BATCH_SIZE is deprecated and repeats XOR_MAX_REQUEST_PAIRS: remove it",
    )


def test_old_and_new_name_apart_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XOR_BATCH_MAX_SIZE", "64")
    monkeypatch.setenv("XOR_BATCH_MAX_PAIRS", "128")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == (
        "invalid settings:\n  XOR_BATCH_MAX_PAIRS='128' and the deprecated "
        "XOR_BATCH_MAX_SIZE='64' are both set, to different values: remove XOR_BATCH_MAX_SIZE"
    )


def test_a_bad_value_under_an_old_name_names_both_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XOR_MAX_BATCH_SIZE", "0")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == (
        "invalid settings:\n  XOR_MAX_BATCH_SIZE (the deprecated name of XOR_MAX_REQUEST_PAIRS): "
        "Input should be greater than 0 (got '0')"
    )


def test_code_sets_the_renamed_settings_by_their_field_names() -> None:
    settings = load_settings(max_request_pairs=3, batch_max_pairs=2)
    assert (settings.max_request_pairs, settings.batch_max_pairs) == (3, 2)
    assert settings.deprecations == ()


def test_the_shutdown_delay_takes_seconds_up_to_five_minutes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XOR_SHUTDOWN_DELAY_SECONDS", "2.5")
    assert load_settings().shutdown_delay_seconds == 2.5
    monkeypatch.setenv("XOR_SHUTDOWN_DELAY_SECONDS", "300")
    assert load_settings().shutdown_delay_seconds == 300
    monkeypatch.setenv("XOR_SHUTDOWN_DELAY_SECONDS", "-0.5")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert str(raised.value) == (
        "invalid settings:\n  XOR_SHUTDOWN_DELAY_SECONDS: Input should be greater than or "
        "equal to 0 (got '-0.5')"
    )


def test_every_setting_is_described() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, name


def test_cli_exits_2_on_invalid_setting_without_traceback() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XOR_")}
    completed = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=REPO,
        env={
            **env,
            "XOR_PORT": "not-a-port",
            "XOR_MAX_REQUEST_PAIRS": "0",
            "XOR_SHUTDOWN_DELAY_SECONDS": "soon",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "XOR_PORT" in completed.stderr and "'not-a-port'" in completed.stderr
    assert "XOR_MAX_REQUEST_PAIRS" in completed.stderr
    assert "XOR_SHUTDOWN_DELAY_SECONDS" in completed.stderr and "'soon'" in completed.stderr


def test_cli_help_lists_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in Settings.model_fields:
        assert f"XOR_{name.upper()}" in out
    for old in ("XOR_MAX_BATCH_SIZE", "XOR_BATCH_MAX_SIZE"):
        assert f"({old}, its old name, is still read)" in out
    assert "TF_CPP_MIN_LOG_LEVEL" in out


def test_cli_rejects_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import main

    assert main(["--port", "1"]) == 2
    assert "no arguments expected" in capsys.readouterr().err


def test_cli_exits_2_when_the_s3_client_cannot_be_configured(tmp_path: Path) -> None:
    """A credentials file that cannot be read (XOR_MODEL_SOURCE's client) is a setting to fix,
    said in one line naming it, never a traceback, and never the keys it holds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XOR_", "AWS_"))}
    credentials = tmp_path / "credentials"
    credentials.write_text("[prod]\naws_access_key_id = K\naws_secret_access_key = s3cr3t\n")
    completed = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=REPO,
        env={
            **env,
            "XOR_MODEL_SOURCE": "s3://models/xor",
            "XOR_MODEL_DIR": str(tmp_path / "cache"),
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    assert "XOR_MODEL_SOURCE" in completed.stderr
    assert f"AWS_SHARED_CREDENTIALS_FILE {credentials}: no [default] profile" in completed.stderr
    assert "s3cr3t" not in completed.stderr
