"""Settings, the capability/price tables, and the CLI's configuration errors."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import (
    CAPABILITIES,
    MODEL_ALIASES,
    OUTPUT_DIMENSIONS,
    PRICES,
    ConfigError,
    UnknownModelError,
    estimate_cost,
    load_settings,
    output_dimensions,
    require,
    resolve_model,
)
from bot.logging_setup import RedactingFilter

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in list(os.environ):
        if key.startswith(("DISCORD_", "GEMINI_", "GOOGLE_", "DATABASE_", "DEFAULT_", "MAX_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    return tmp_path


def test_aliases_and_preview_ids_resolve() -> None:
    assert resolve_model("pro") == "gemini-3-pro-image"
    assert resolve_model("flash") == "gemini-3.1-flash-image"
    assert resolve_model("gemini-3-pro-image-preview") == "gemini-3-pro-image"
    assert resolve_model("FLASH") == "gemini-3.1-flash-image"
    with pytest.raises(UnknownModelError, match="unknown model 'dalle'"):
        resolve_model("dalle")


def test_every_model_has_prices_for_every_size() -> None:
    assert set(CAPABILITIES) == set(PRICES)
    for model_id, cap in CAPABILITIES.items():
        for size in cap.sizes:
            assert size in PRICES[model_id].per_image, (model_id, size)
    assert set(MODEL_ALIASES.values()) <= set(CAPABILITIES)


def test_figures_from_platform_facts() -> None:
    pro = CAPABILITIES["gemini-3-pro-image"]
    flash = CAPABILITIES["gemini-3.1-flash-image"]
    assert pro.sizes == ("1K", "2K", "4K") and "512" in flash.sizes
    assert "1:8" in flash.aspect_ratios and "1:8" not in pro.aspect_ratios
    assert pro.max_input_images == 14 and pro.max_identity_anchors == 6
    assert estimate_cost("pro", "4K") == pytest.approx(0.24)
    assert estimate_cost("flash", "1K", input_tokens=1_000_000) == pytest.approx(0.067 + 0.5)


def test_dimension_table_covers_exactly_each_models_aspects_and_sizes() -> None:
    assert set(OUTPUT_DIMENSIONS) == set(CAPABILITIES)
    for model_id, cap in CAPABILITIES.items():
        table = OUTPUT_DIMENSIONS[model_id]
        assert list(table) == list(cap.aspect_ratios), model_id
        for aspect, by_size in table.items():
            assert list(by_size) == list(cap.sizes), (model_id, aspect)
            a, b = (int(x) for x in aspect.split(":"))
            for size, (width, height) in by_size.items():
                # the real shape is the nominal one within 3 % (Google rounds to 16 px)
                assert abs((width / height) / (a / b) - 1) < 0.03, (model_id, aspect, size)


def test_dimensions_are_googles_published_figures() -> None:
    assert output_dimensions("pro", "2:3", "1K") == (848, 1264)
    assert output_dimensions("pro", "16:9", "4K") == (5504, 3072)
    assert output_dimensions("pro", "21:9", "2K") == (3168, 1344)
    assert output_dimensions("gemini-3-pro-image-preview", "4:5", "1K") == (928, 1152)
    assert output_dimensions("flash", "1:8", "1K") == (384, 3072)
    assert output_dimensions("flash", "8:1", "4K") == (12288, 1536)
    assert output_dimensions("flash", "3:4", "512") == (448, 600)
    assert output_dimensions("legacy", "16:9", "1K") == (1344, 768)
    # Gemini 3: 2K is twice 1K, 4K four times, 512 half, for every aspect
    for aspect, by_size in OUTPUT_DIMENSIONS["gemini-3.1-flash-image"].items():
        w, h = by_size["1K"]
        assert by_size["2K"] == (2 * w, 2 * h) and by_size["4K"] == (4 * w, 4 * h), aspect
        assert by_size["512"] == (w // 2, h // 2), aspect
        if aspect in OUTPUT_DIMENSIONS["gemini-3-pro-image"]:
            assert OUTPUT_DIMENSIONS["gemini-3-pro-image"][aspect]["1K"] == (w, h)
    with pytest.raises(KeyError):
        output_dimensions("pro", "8:1", "1K")


def test_settings_from_env(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_GUILD_IDS", "123, 456")
    monkeypatch.setenv("GOOGLE_API_KEY", "google-key")
    monkeypatch.setenv("DEFAULT_MODEL", "flash")
    settings = load_settings()
    assert settings.discord_guild_ids == [123, 456]
    assert settings.gemini_api_key is not None
    assert settings.gemini_api_key.get_secret_value() == "google-key"
    assert settings.default_model == "gemini-3.1-flash-image"
    assert settings.gemini_api_version == "v1beta"
    assert settings.timeout_for("4K") > settings.timeout_for("1K")


def test_gemini_key_wins_over_google_key(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "google-key")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-key")
    settings = load_settings()
    assert settings.gemini_api_key is not None
    assert settings.gemini_api_key.get_secret_value() == "gemini-key"


def test_settings_read_dotenv(clean_env: Path) -> None:
    (clean_env / ".env").write_text("DISCORD_TOKEN=abc.def\nMAX_CONCURRENT_JOBS=7\n")
    settings = load_settings()
    assert settings.max_concurrent_jobs == 7
    require(settings, "DISCORD_TOKEN")


def test_malformed_setting_is_one_line_naming_it(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_GUILD_IDS", "12,abc")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "DISCORD_GUILD_IDS" in message and "\n" not in message


def test_missing_token_message(clean_env: Path) -> None:
    with pytest.raises(ConfigError, match=r"DISCORD_TOKEN is not set.*\.env"):
        require(load_settings(), "DISCORD_TOKEN")


def _run_cli(args: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "GEMINI_", "GOOGLE_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=60,
    )


def test_run_with_empty_environment_exits_2_with_one_line(tmp_path: Path) -> None:
    result = _run_cli(["run"], tmp_path)
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "DISCORD_TOKEN" in lines[0] and ".env" in lines[0]
    assert "Traceback" not in result.stderr


def test_malformed_setting_never_prints_a_secret(tmp_path: Path) -> None:
    secret = "super-secret-token-value-123"
    result = _run_cli(
        ["run"], tmp_path, {"DISCORD_TOKEN": secret, "MAX_CONCURRENT_JOBS": "lots"}
    )
    assert result.returncode == 2
    assert "MAX_CONCURRENT_JOBS" in result.stderr
    assert secret not in result.stdout + result.stderr


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["prompt", "validate", "--help"],
                                  ["prompt", "compile", "--help"], ["render", "--help"]])
def test_every_subcommand_has_help(tmp_path: Path, args: list[str]) -> None:
    result = _run_cli(args, tmp_path)
    assert result.returncode == 0
    assert "usage:" in result.stdout


def test_log_redaction_hides_secrets_and_token_shapes(caplog: pytest.LogCaptureFixture) -> None:
    redactor = RedactingFilter(["my-gemini-key-xyz"])
    logger = logging.getLogger("test.redaction")
    logger.addFilter(redactor)
    token = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789"
    with caplog.at_level(logging.INFO, logger="test.redaction"):
        logger.info("key %s and token %s", "my-gemini-key-xyz", token)
    logger.removeFilter(redactor)
    assert "my-gemini-key-xyz" not in caplog.text
    assert token not in caplog.text
    assert "[redacted]" in caplog.text
