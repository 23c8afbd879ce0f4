"""``config example`` and ``config check``: the example covers every setting and passes the
check; the check refuses bad files and never prints a secret."""

from __future__ import annotations

import dataclasses
import sys

from tests.server.test_cli_admin import cli

from metered_realtime.server.config import ServerConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib
from metered_realtime.server.config_text import DESCRIPTIONS


def test_every_setting_is_described():
    assert {f.name for f in dataclasses.fields(ServerConfig)} <= DESCRIPTIONS.keys()


async def test_the_example_covers_every_setting_and_passes_the_check(tmp_path):
    code, example, _ = await cli("config", "example")
    assert code == 0
    written = tomllib.loads(example)["server"]
    defaults = ServerConfig()
    for field in dataclasses.fields(ServerConfig):
        default = getattr(defaults, field.name)
        if default is None:
            assert f'\n# {field.name} = "..."\n' in example and field.name not in written
        else:
            value = written[field.name]
            assert (tuple(value) if isinstance(value, list) else value) == default, field.name
    path = tmp_path / "example.toml"
    path.write_text(example)
    code, effective, err = await cli("config", "check", str(path))
    assert (code, err) == (0, "")
    assert 'host = "127.0.0.1"\n' in effective and "max_subscriptions = 100\n" in effective


async def test_check_shows_the_effective_settings_with_secrets_masked(tmp_path):
    path = tmp_path / "server.toml"
    path.write_text(
        "[server]\n"
        "port = 9000\n"
        'admin_token = "adm-7c1e9d"\n'
        'metrics_token = "met-2b8a4f"\n'
        'redis = "redis://:rpw-55aa@127.0.0.1:6379/0"\n'
        'db = "postgresql://realtime:dbpw-9e3c@db.internal/realtime"\n'
        'ip_connect_exempt = ["10.0.0.0/8"]\n'
    )
    code, shown, _ = await cli("config", "check", str(path))
    assert code == 0
    for secret in ("adm-7c1e9d", "met-2b8a4f", "rpw-55aa", "dbpw-9e3c"):
        assert secret not in shown
    assert "port = 9000\n" in shown
    assert 'admin_token = "********"\n' in shown
    assert 'db = "postgresql://realtime:********@db.internal/realtime"\n' in shown
    assert 'ip_connect_exempt = ["10.0.0.0/8"]\n' in shown
    assert "# admin_port is unset\n" in shown


async def test_check_refuses_bad_files(tmp_path):
    cases = {
        "unknown.toml": ("[server]\nprot = 80\n", "unknown setting"),
        "type.toml": ('[server]\nport = "eighty"\n', "invalid literal"),
        "kind.toml": ("[server]\nport = [80]\nreuse_port = 1\n", "port must be int"),
        "range.toml": ("[server]\npresence_window = 1.0\n", "presence_window"),
        "syntax.toml": ("[server\n", "Expected"),
    }
    for name, (text, _) in cases.items():
        (tmp_path / name).write_text(text)
    for name, (_, message) in cases.items():
        code, out, err = await cli("config", "check", str(tmp_path / name))
        assert code == 1 and out == "", name
        assert err.startswith(f"error: {tmp_path / name}: "), err
        assert message in err, err
    code, _, err = await cli("config", "check", str(tmp_path / "missing.toml"))
    assert code == 1 and "No such file" in err
