"""Which ``PINGAN_*`` variables a deployment may set (used by the manifest and compose tests).

Contract: ``known_env()`` is the set of every ``PINGAN_<FIELD>`` of `streams.settings.Settings`
plus the ``envvar`` of every option of the operator CLI's commands (e.g. ``PINGAN_DEVICE_REGISTRY``,
``PINGAN_SIP_PASSWORD``) and the search credentials variables of `streams.web.auth`.
``SECRET_ENV`` are the variables that must come from a Secret, never from a literal value.
"""
from __future__ import annotations

import importlib
import inspect

SECRET_ENV = frozenset({"PINGAN_PERSON_KEY_SECRET", "PINGAN_SEARCH_TOKENS", "PINGAN_SIP_PASSWORD"})
CLI_MODULES = ("streams.cli.connectors", "streams.cli.worker", "streams.cli.search", "streams.cli.infra")


def settings_env() -> frozenset[str]:
    """``PINGAN_<FIELD>`` for every Settings field."""
    from streams.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    return frozenset(f"{prefix}{name}".upper() for name in Settings.model_fields)


def cli_env() -> frozenset[str]:
    """The envvars of the CLI commands' options (Typer ``OptionInfo.envvar``) and of the search auth."""
    from streams.web import auth

    found = {auth.ENV_FILE, auth.ENV_TOKENS}
    for module in CLI_MODULES:
        app = importlib.import_module(module).app
        for cmd in app.registered_commands:
            for param in inspect.signature(cmd.callback).parameters.values():
                envvar = getattr(param.default, "envvar", None)
                if isinstance(envvar, str):
                    found.add(envvar)
                elif isinstance(envvar, (list, tuple)):
                    found.update(envvar)
    return frozenset(e for e in found if e.startswith("PINGAN_"))


def known_env() -> frozenset[str]:
    return settings_env() | cli_env()
