"""Settings is the only reader of the environment: one name per setting, secrets out of repr, and
the receivers, the search credentials and the time zone all take their values from it."""
from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import pytest

from connectors.ingest.sip_server import SipConfig
from streams.settings import DEFAULT_TIMEZONE, DEPRECATED_ENV, DEV_SECRETS, MissingSecrets, Settings
from streams.web.auth import CredentialsError, credentials_from_settings, hash_token
from streams.web.query import parse_search_params

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "county-token-0123456789"
TOKENS = json.dumps({"tokens": {TOKEN: {"user": "汶川县综治中心", "admin_code": "513221"}}})


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.upper().startswith("PINGAN_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_receiver_and_search_settings_are_read_from_their_one_name(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PINGAN_SIP_PORT", "5070")
    clean_env.setenv("PINGAN_SIP_PASSWORD", "s3cret-sip")
    clean_env.setenv("PINGAN_ALARM110_URL", "postgresql://desk:pw@db/jjd")
    clean_env.setenv("PINGAN_REGISTRY_PATH", "/etc/pingan/registry.csv")
    clean_env.setenv("PINGAN_SEARCH_TOKENS", TOKENS)
    clean_env.setenv("PINGAN_TIMEZONE", "Asia/Urumqi")
    clean_env.setenv("PINGAN_PERSON_KEY_SECRET", "person-key-0123456789")
    s = Settings.from_env()
    assert (s.sip_port, s.sip_password, s.alarm110_url) == (5070, "s3cret-sip", "postgresql://desk:pw@db/jjd")
    assert s.registry_path == Path("/etc/pingan/registry.csv") and s.timezone == "Asia/Urumqi"
    assert s.search_tokens == TOKENS and s.search_credentials is None
    # secrets stay out of the repr (logs, tracebacks)
    text = repr(s)
    for secret in ("s3cret-sip", "desk:pw", TOKEN, s.person_key_secret):
        assert secret not in text


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings.from_env()
    assert s.timezone == DEFAULT_TIMEZONE == "Asia/Shanghai"
    assert s.sip_port == 5060 and s.alarm110_url is None and s.registry_path is None
    assert s.search_tokens is None and s.search_credentials is None


def test_no_default_secrets_outside_dev_mode(clean_env: pytest.MonkeyPatch) -> None:
    s = Settings.from_env()
    assert (s.dev_mode, s.person_key_secret, s.sip_password, s.ingest_credentials) == (False, None, None, None)
    assert s.missing_secrets("worker", "receivers", "sip") == [
        "PINGAN_PERSON_KEY_SECRET", "PINGAN_INGEST_CREDENTIALS", "PINGAN_SIP_PASSWORD"]
    for role in ("worker", "search", "receivers", "sip"):
        with pytest.raises(MissingSecrets, match="PINGAN_DEV_MODE"):
            s.require_secrets(role)
    with pytest.raises(MissingSecrets, match="PINGAN_PERSON_KEY_SECRET"):
        s.person_key()
    clean_env.setenv("PINGAN_PERSON_KEY_SECRET", "k" * 16)
    assert Settings.from_env().require_secrets("worker").person_key() == b"k" * 16


def test_dev_mode_fills_public_secrets_and_warns(clean_env: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    clean_env.setenv("PINGAN_DEV_MODE", "1")
    clean_env.setenv("PINGAN_SIP_PASSWORD", "set-explicitly")
    with caplog.at_level(logging.WARNING, logger="streams.settings"):
        s = Settings.from_env()
    assert s.dev_mode and s.person_key_secret == DEV_SECRETS["person_key_secret"]
    assert s.sip_password == "set-explicitly"  # an explicit value wins even in dev mode
    assert s.missing_secrets("worker", "receivers", "sip") == [] and s.require_secrets("worker") is s
    assert "PINGAN_DEV_MODE is on" in caplog.text and "person_key_secret" in caplog.text
    clean_env.delenv("PINGAN_SIP_PASSWORD")
    assert Settings(dev_mode=True).sip_password == DEV_SECRETS["sip_password"]
    assert Settings(dev_mode=False).sip_password is None


def test_deprecated_registry_name_is_an_alias_and_warns(clean_env: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    assert DEPRECATED_ENV == {"PINGAN_DEVICE_REGISTRY": "PINGAN_REGISTRY_PATH"}
    clean_env.setenv("PINGAN_DEVICE_REGISTRY", "/old/registry.csv")
    with caplog.at_level(logging.WARNING, logger="streams.settings"):
        assert Settings.from_env().registry_path == Path("/old/registry.csv")
    assert "PINGAN_DEVICE_REGISTRY is deprecated" in caplog.text
    clean_env.setenv("PINGAN_REGISTRY_PATH", "/new/registry.csv")  # the name in force wins
    assert Settings.from_env().registry_path == Path("/new/registry.csv")
    # by field name, as every caller passes it, and explicit values win over the environment
    assert Settings(registry_path=Path("/x.csv")).registry_path == Path("/x.csv")
    assert Settings(registry_path=None).registry_path is None


def test_sip_config_from_settings_and_explicit_overrides() -> None:
    s = Settings(sip_port=5070, sip_password="from-settings", timezone="Asia/Urumqi")
    cfg = SipConfig.from_settings(s, host="0.0.0.0", port=None, password=None)
    assert (cfg.host, cfg.port, cfg.password, cfg.timezone) == ("0.0.0.0", 5070, "from-settings", "Asia/Urumqi")
    assert SipConfig.from_settings(s, port=5080, password="flag").port == 5080
    assert "from-settings" not in repr(cfg)
    defaults = Settings.model_fields
    assert (SipConfig().port, SipConfig().password) == (defaults["sip_port"].default, defaults["sip_password"].default)


def test_search_credentials_come_from_settings(tmp_path: Path) -> None:
    creds = credentials_from_settings(Settings(search_tokens=TOKENS))
    assert creds.authenticate(TOKEN) is not None and len(creds) == 1
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"tokens": {f"sha256:{hash_token('town-token-0123456789')}":
                                           {"user": "三江镇", "admin_code": "513221107"}}}), encoding="utf-8")
    # the file (setting or option) wins over the tokens mapping
    creds = credentials_from_settings(Settings(search_tokens=TOKENS, search_credentials=path))
    assert creds.authenticate("town-token-0123456789") is not None and creds.authenticate(TOKEN) is None
    assert credentials_from_settings(Settings(search_tokens=TOKENS), path).authenticate(TOKEN) is None
    with pytest.raises(CredentialsError, match="PINGAN_SEARCH_TOKENS"):
        credentials_from_settings(Settings(search_tokens=None, search_credentials=None))
    with pytest.raises(CredentialsError, match="PINGAN_SEARCH_TOKENS"):
        credentials_from_settings(Settings(search_tokens="{not json"))


def test_search_times_are_local_to_the_settings_timezone() -> None:
    assert parse_search_params({"from": "2024-05-01T08:00:00"}).time_from == 1714521600000  # Asia/Shanghai
    assert parse_search_params({"from": "2024-05-01T08:00:00"}, "UTC").time_from == 1714550400000
    assert parse_search_params({"from": "2024-05-01T00:00:00Z"}, "UTC").time_from == 1714521600000
    assert parse_search_params({"to": "2024-05-01"}).time_to == 1714579199999  # end of the local day
    assert parse_search_params({"to": "2024-05-01"}, "Asia/Urumqi").time_to == 1714579199999 + 2 * 3600_000


def _reads_environment(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
                isinstance(node.value, ast.Name) and node.value.id == "os":
            lines.append(node.lineno)
        elif isinstance(node, ast.keyword) and node.arg == "envvar":
            lines.append(node.value.lineno)
    return lines


# copying the whole environment into a subprocess's (then applying Settings to it) is not reading it
ENV_COPIES = {"streams/ops/replay.py"}


def test_only_settings_reads_the_environment() -> None:
    offenders = {}
    for folder in ("streams", "connectors", "schemas", "simulator"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "streams/settings.py" or rel in ENV_COPIES:
                continue
            lines = _reads_environment(ast.parse(path.read_text(encoding="utf-8")))
            if lines:
                offenders[rel] = lines
    assert offenders == {}, "read settings through streams.settings.Settings.from_env()"


@pytest.mark.parametrize("args, missing", [
    (["worker", "run"], "PINGAN_PERSON_KEY_SECRET"),
    (["search", "serve"], "PINGAN_PERSON_KEY_SECRET"),
    (["connectors", "run"], "PINGAN_INGEST_CREDENTIALS, PINGAN_SIP_PASSWORD"),
    (["connectors", "run", "--no-sip"], "PINGAN_INGEST_CREDENTIALS"),
])
def test_processes_refuse_to_start_without_secrets_outside_dev_mode(clean_env: pytest.MonkeyPatch,
                                                                     args: list[str], missing: str) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PINGAN_")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"without {missing} " in out.stderr and "PINGAN_DEV_MODE" in out.stderr
