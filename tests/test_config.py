"""Workspace creation and configuration: files, defaults, environment, errors."""

from __future__ import annotations

import stat

import pytest
from newsletter.config import load_settings
from newsletter.errors import ConfigError, WorkspaceNotFound
from newsletter.workspace import init_workspace


def test_init_creates_workspace_with_private_secret(tmp_path):
    config = init_workspace(tmp_path / "letter", sender="Clinic <news@clinic.example>",
                            postal_address="1 Main St", base_url="https://news.clinic.example")
    folder = config.parent
    for sub in ("templates", "subscribers", "articles"):
        assert (folder / sub).is_dir()
    secret = folder / ".newsletter" / "secret_key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_text().strip()) >= 40
    assert "secret" not in config.read_text().split("[newsletter]")[1].split("[delivery]")[0].lower()
    settings = load_settings(folder, environ={})
    assert settings.sender == "Clinic <news@clinic.example>"
    assert settings.postal_address == "1 Main St"
    assert settings.database_url.endswith(".newsletter/newsletter.db")
    assert settings.secret_key == secret.read_text().strip()


def test_init_refuses_existing_workspace_and_keeps_it(tmp_path):
    config = init_workspace(tmp_path / "letter", postal_address="Somewhere 1")
    before = config.read_text()
    with pytest.raises(ConfigError.__mro__[1]) as info:  # NewsletterError family
        init_workspace(tmp_path / "letter")
    assert "already exists" in info.value.message
    assert config.read_text() == before


def test_init_rejects_plain_http_base_url_for_public_host(tmp_path, cli):
    result = cli("init", str(tmp_path / "x"), "--base-url", "http://news.example.org")
    assert result.exit_code == 1
    assert "base_url must be an https:// URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x" / "newsletter.toml").exists()


def test_environment_overrides_file(tmp_path):
    folder = init_workspace(tmp_path / "letter").parent
    settings = load_settings(folder, environ={
        "NEWSLETTER_FROM": "Other <other@example.org>",
        "NEWSLETTER_TRANSPORT": "smtp",
        "NEWSLETTER_BASE_URL": "https://letters.example.org/",
        "NEWSLETTER_DATABASE_URL": "sqlite:///elsewhere.db",
        "SENDGRID_API_KEY": "SG.secret",
    })
    assert settings.sender_address == "other@example.org"
    assert settings.transport == "smtp"
    assert settings.base_url == "https://letters.example.org"
    assert settings.database_url == "sqlite:///elsewhere.db"
    assert "SG.secret" not in repr(settings)


def test_config_error_names_file_key_and_problem(tmp_path):
    folder = init_workspace(tmp_path / "letter").parent
    config = folder / "newsletter.toml"
    config.write_text(config.read_text().replace('transport = "file"', 'transport = "pigeon"'))
    with pytest.raises(ConfigError) as info:
        load_settings(folder, environ={})
    assert str(config) in info.value.message
    assert "[delivery] transport" in info.value.message
    assert "pigeon" in info.value.message


def test_broken_toml_reports_line(tmp_path, cli, monkeypatch):
    folder = init_workspace(tmp_path / "letter").parent
    (folder / "newsletter.toml").write_text("[newsletter]\nname = \n")
    monkeypatch.chdir(folder)
    result = cli("subscribers", "list")
    assert result.exit_code == 1
    assert "not valid TOML" in result.stderr and "line 2" in result.stderr
    assert "Traceback" not in result.stderr


def test_environment_secret_key_rotation(tmp_path):
    folder = init_workspace(tmp_path / "letter").parent
    file_key = (folder / ".newsletter" / "secret_key").read_text().strip()
    settings = load_settings(folder, environ={"NEWSLETTER_SECRET_KEY": "new-key"})
    assert settings.secret_keys == ("new-key", file_key)


def test_no_workspace_is_one_line_error(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("subscribers", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no newsletter.toml found")
    assert "Hint: run 'newsletter init" in result.stderr
    with pytest.raises(WorkspaceNotFound):
        load_settings(tmp_path / "nowhere", environ={})


def test_workspace_found_from_subfolder(tmp_path, monkeypatch):
    folder = init_workspace(tmp_path / "letter").parent
    monkeypatch.chdir(folder / "articles")
    assert load_settings(environ={}).workspace == folder


def test_usage_error_exits_1_with_hint(cli):
    result = cli("subscribers", "add")
    assert result.exit_code == 1
    assert "Missing argument" in result.stderr
    assert "newsletter subscribers add --help" in result.stderr


def test_help_has_example_on_every_command(cli):
    import click
    from newsletter.cli import COMMANDS
    from newsletter.cli import cli as group

    checked = 0
    for name in COMMANDS:
        command = group.get_command(click.Context(group), name)
        if command is None:
            continue
        commands = [command] + (list(command.commands.values()) if isinstance(command, click.Group) else [])
        for each in commands:
            assert "Example" in (each.help or ""), f"{name} {each.name} --help has no example"
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_in_the_file_are_one_line_errors(tmp_path, cli, monkeypatch, value):
    folder = init_workspace(tmp_path / "letter").parent
    config = folder / "newsletter.toml"
    assert "\nrate = 0\n" in config.read_text()
    config.write_text(config.read_text().replace("\nrate = 0\n", f"\nrate = {value}\n", 1))
    with pytest.raises(ConfigError) as info:
        load_settings(folder, environ={})
    assert "[delivery] rate must be a finite number" in info.value.message and info.value.hint
    monkeypatch.chdir(folder)
    result = cli("subscribers", "list")
    assert result.exit_code == 1 and "finite number" in result.stderr and "Hint:" in result.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "Infinity", "1e999"])
def test_non_finite_numbers_in_the_environment_are_one_line_errors(tmp_path, value):
    folder = init_workspace(tmp_path / "letter").parent
    with pytest.raises(ConfigError) as info:
        load_settings(folder, environ={"NEWSLETTER_SEND_PROCESSES": value})
    assert "NEWSLETTER_SEND_PROCESSES must be a finite number" in info.value.message


@pytest.mark.parametrize("url", ["https://news.example.org/?utm=1", "https://news.example.org/#top",
                                 "https://news.example.org/letters?", "https://news.example.org:http/"])
def test_base_url_with_a_query_or_fragment_is_refused_when_loading(tmp_path, url):
    folder = init_workspace(tmp_path / "letter").parent
    with pytest.raises(ConfigError) as info:
        load_settings(folder, environ={"NEWSLETTER_BASE_URL": url})
    assert "NEWSLETTER_BASE_URL" in info.value.message and info.value.hint


@pytest.mark.parametrize("transport, env, base_url, problem", [
    ("smtp", {"NEWSLETTER_SMTP_URL": "smtp://smtp.mailhost.example:587"}, "http://127.0.0.1:8000", "https://"),
    ("smtp", {"NEWSLETTER_SMTP_URL": "smtp://smtp.mailhost.example:587"}, "https://localhost:8443", "loopback"),
    ("sendgrid", {}, "https://10.1.2.3", "private"),
    ("sendgrid", {}, "https://newsletter.internal", "private"),
    ("sendgrid", {"NEWSLETTER_SENDGRID_HOST": "https://sendgrid.proxy.example"}, "https://[fd00::1]", "private"),
    ("smtp", {"NEWSLETTER_SMTP_URL": "smtp://127.0.0.1:1025"}, "http://127.0.0.1:8000", None),
    ("sendgrid", {"NEWSLETTER_SENDGRID_HOST": "http://127.0.0.1:3000"}, "http://127.0.0.1:8000", None),
    ("file", {}, "http://127.0.0.1:8000", None),
    ("console", {}, "http://localhost:8000", None),
    ("sendgrid", {}, "https://news.clinic.example", None),
])
def test_base_url_problem_only_when_mail_leaves_this_machine(tmp_path, transport, env, base_url, problem):
    from newsletter.config import base_url_problem

    folder = init_workspace(tmp_path / "letter", base_url=base_url, transport=transport).parent
    settings = load_settings(folder, environ=env)
    found = base_url_problem(settings)
    if problem is None:
        assert found is None
    else:
        assert problem in found.message and "base_url" in found.hint and "NEWSLETTER_BASE_URL" in found.hint


def test_init_for_a_real_transport_warns_about_the_default_base_url(tmp_path, cli):
    real = cli("init", str(tmp_path / "real"), "--transport", "sendgrid", "--postal-address", "1 Main St")
    assert real.exit_code == 0 and "readers could not unsubscribe" in real.stderr and "base_url" in real.stderr
    local = cli("init", str(tmp_path / "local"), "--postal-address", "1 Main St")
    assert local.exit_code == 0 and "base_url" not in local.stderr
