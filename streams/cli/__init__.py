"""`pingan`: the single operator entry point.

Each area owns its own Typer sub-app in its own module; this file only mounts them.
"""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(help="Ping'an Bus (平安总线) operator commands", no_args_is_help=True)

# (sub-command name, module path, attribute) — a module that is missing is skipped so that
# partially built areas do not break the rest of the CLI.
_SUBAPPS: list[tuple[str, str, str]] = [
    ("infra", "streams.cli.infra", "app"),
    ("simulate", "streams.cli.simulate", "app"),
    ("connectors", "streams.cli.connectors", "app"),
    ("worker", "streams.cli.worker", "app"),
    ("bench", "streams.cli.bench", "app"),
    ("search", "streams.cli.search", "app"),
    ("replay", "streams.cli.replay", "app"),
    ("dlq", "streams.cli.dlq", "app"),
    ("demo", "infra.demo", "app"),
    ("schemas", "streams.cli.schemas", "app"),
]


def _mount() -> None:
    for name, module, attr in _SUBAPPS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue
            raise
        sub = getattr(mod, attr)
        if isinstance(sub, typer.Typer):
            app.add_typer(sub, name=name)
        else:
            app.command(name)(sub)


def main() -> None:
    """Console-script entry point."""
    _mount()
    app()


if __name__ == "__main__":
    main()
