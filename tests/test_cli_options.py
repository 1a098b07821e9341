"""The CLI's serve options come from Config: one option per field, with the field's default.

1. Every Config field has a serve option, and every serve option but --app-dir is a field
   (--config is not a value: it reads a file of them).
2. Each option's default is its field's default, and reads GRACEFUL_<FIELD>.
3. `graceful serve` with no option builds exactly Config().
"""

from __future__ import annotations

import dataclasses

import click

from graceful.cli.main import serve
from graceful.cli.serve_options import parse_serve
from graceful.config import Config


def options() -> dict[str, click.Option]:
    return {p.name: p for p in serve.params
            if isinstance(p, click.Option) and p.name and p.expose_value}


def test_one_option_per_field() -> None:
    """1."""
    fields = {field.name for field in dataclasses.fields(Config)}
    assert set(options()) - {"app_dir"} == fields


def test_defaults_agree() -> None:
    """2."""
    for field in dataclasses.fields(Config):
        option = options()[field.name]
        assert option.default == field.default, field.name
        assert option.envvar == f"GRACEFUL_{field.name.upper()}"


def test_no_option_is_the_default_config(monkeypatch) -> None:
    """3."""
    for field in dataclasses.fields(Config):
        monkeypatch.delenv(f"GRACEFUL_{field.name.upper()}", raising=False)
    parsed = parse_serve(["app:make"])
    assert parsed.config == Config()
    assert parsed.options == []
