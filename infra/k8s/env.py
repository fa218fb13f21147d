"""Which ``PINGAN_*`` variables a deployment may set (used by the manifest and compose tests).

Contract: ``known_env()`` is the set of every ``PINGAN_<FIELD>`` of `streams.settings.Settings` —
the only reader of the environment, one name per setting (deprecated aliases such as
``PINGAN_DEVICE_REGISTRY`` are still read but are not known here, so no manifest uses them) — plus
the ``envvar`` of any option of the operator CLI's commands (`cli_env`; there are none: the CLI
options only override settings explicitly, and a test keeps it so). ``SECRET_ENV`` are the
variables that must come from a Secret, never from a literal value: the settings kept out of the
settings' repr (``repr=False``: the person-key secret, the SIP password, the search tokens, the 110
desk URL that may carry a database password, the audit key, the Kafka SASL and Elasticsearch
passwords). The manifest test accepts ``PINGAN_KAFKA_SASL_PASSWORD`` from the Secret the Strimzi
User Operator writes for the pod's KafkaUser, every other one from ``pingan-secrets``.
"""
from __future__ import annotations

import importlib
import inspect

from streams.settings import Settings

CLI_MODULES = ("streams.cli.connectors", "streams.cli.worker", "streams.cli.search", "streams.cli.infra")


def _env_name(field: str) -> str:
    return f"{Settings.model_config.get('env_prefix', '')}{field}".upper()


def settings_env() -> frozenset[str]:
    """``PINGAN_<FIELD>`` for every Settings field."""
    return frozenset(_env_name(name) for name in Settings.model_fields)


def secret_env() -> frozenset[str]:
    """``PINGAN_<FIELD>`` of every Settings field kept out of its repr (a secret)."""
    return frozenset(_env_name(name) for name, f in Settings.model_fields.items() if not f.repr)


def cli_env() -> frozenset[str]:
    """The ``PINGAN_*`` envvars of the CLI commands' options (Typer ``OptionInfo.envvar``)."""
    found: set[str] = set()
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


SECRET_ENV = secret_env()
