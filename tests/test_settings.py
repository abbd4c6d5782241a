import pytest
from click.testing import CliRunner

from prcrs_batch.app.cli import main
from prcrs_batch.settings import SettingsError, load_settings


def test_defaults(settings_env):
    settings = load_settings()
    assert settings.warehouse_url == "sqlite:///prcrs.db"
    assert settings.results_database_url == settings.warehouse_url
    assert settings.device == "auto"
    assert settings.active_days == 30
    assert settings.schedule_cron == "0 2 * * *"
    assert settings.email_enabled is False
    assert settings.model_dir.name == "models"


def test_postgres_url_uses_psycopg3(settings_env, monkeypatch):
    monkeypatch.setenv("PRCRS_WAREHOUSE_URL", "postgresql://user@db/warehouse")
    assert load_settings().warehouse_url == "postgresql+psycopg://user@db/warehouse"


def test_recipients_are_split_and_dotenv_is_read(settings_env):
    (settings_env / ".env").write_text("PRCRS_ALERT_TO=a@x.org, b@y.org\nPRCRS_SMTP_HOST=mail\n")
    settings = load_settings()
    assert settings.alert_to == ["a@x.org", "b@y.org"]
    assert settings.email_enabled


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("PRCRS_ACTIVE_DAYS", "thirty", "PRCRS_ACTIVE_DAYS"),
        ("PRCRS_ACTIVE_DAYS", "0", "PRCRS_ACTIVE_DAYS"),
        ("PRCRS_DEVICE", "tpu", "PRCRS_DEVICE"),
        ("PRCRS_ALERT_THRESHOLD", "1.5", "PRCRS_ALERT_THRESHOLD"),
        ("PRCRS_TIMEZONE", "Mars/Olympus", "PRCRS_TIMEZONE"),
        ("PRCRS_SCHEDULE_CRON", "every night", "PRCRS_SCHEDULE_CRON"),
        ("PRCRS_SMTP_PORT", "70000", "PRCRS_SMTP_PORT"),
        ("PRCRS_SMTP_CA_FILE", "/nonexistent/ca.pem", "PRCRS_SMTP_CA_FILE"),
        ("PRCRS_ALERT_TO", "not-an-address", "PRCRS_ALERT_TO"),
    ],
)
def test_bad_value_names_the_variable(settings_env, monkeypatch, variable, value, fragment):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert fragment in message
    assert "\n" not in message


def test_smtp_host_needs_recipients(settings_env, monkeypatch):
    monkeypatch.setenv("PRCRS_SMTP_HOST", "mail.example.org")
    with pytest.raises(SettingsError, match="PRCRS_ALERT_TO"):
        load_settings()


def test_password_never_printed(settings_env, monkeypatch):
    monkeypatch.setenv("PRCRS_SMTP_USER", "svc")
    monkeypatch.setenv("PRCRS_SMTP_PASSWORD", "s3cret-pw")
    settings = load_settings()
    assert "s3cret-pw" not in repr(settings)
    assert "s3cret-pw" not in str(settings.model_dump())


def test_cli_reports_bad_setting_in_one_line(settings_env, monkeypatch):
    monkeypatch.setenv("PRCRS_LOOKBACK_HOURS", "-3")
    result = CliRunner().invoke(main, ["init-db"])
    assert result.exit_code == 1
    assert "PRCRS_LOOKBACK_HOURS" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "command",
    ["init-db", "load-cohort", "run", "backfill", "schedule", "demo", "train", "evaluate"],
)
def test_every_command_has_help(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


# --- addresses are parsed as addresses ------------------------------------------------

INJECTED = "oncall@x.org\r\nBcc: other@x.org"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PRCRS_ALERT_TO", INJECTED),
        ("PRCRS_ALERT_TO", "oncall@x.org Bcc: other@x.org"),
        ("PRCRS_ALERT_TO", "oncall@x.org, @x.org"),
        ("PRCRS_ALERT_TO", "oncall@"),
        ("PRCRS_SILENT_TO", "validation@x.org\nBcc: other@x.org"),
        ("PRCRS_OPS_TO", "it-ops"),
        ("PRCRS_ALERT_FROM", "prcrs@x.org\r\nBcc: other@x.org"),
        ("PRCRS_ALERT_FROM", "a@x.org, b@x.org"),
    ],
)
def test_a_value_that_is_not_a_list_of_addresses_is_refused_naming_it(
    settings_env, monkeypatch, variable, value
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message and "\r" not in message


def test_check_refuses_a_recipient_with_a_line_break_in_one_line(settings_env, monkeypatch):
    monkeypatch.setenv("PRCRS_ALERT_TO", INJECTED)
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "FAIL  settings   PRCRS_ALERT_TO: a line break or control character in "
        "'oncall@x.org\\r\\nBcc: other@x.org': give addresses separated by commas"
    )


def test_run_refuses_it_too(settings_env, monkeypatch):
    monkeypatch.setenv("PRCRS_ALERT_TO", INJECTED)
    result = CliRunner().invoke(main, ["run", "--no-email"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: configuration error: PRCRS_ALERT_TO: a line break")


def test_display_names_and_semicolons_reach_the_server_as_bare_addresses(
    settings_env, monkeypatch, smtp_sink
):
    from prcrs_batch.report import mailer
    from prcrs_batch.report.render import Report

    monkeypatch.setenv("PRCRS_ALERT_TO", '"Doe, J" <j.doe@x.org>; oncall@x.org')
    monkeypatch.setenv("PRCRS_OPS_TO", "IT on call <it@x.org>")
    monkeypatch.setenv("PRCRS_ALERT_FROM", "PrCRS <prcrs@x.org>")
    settings = load_settings()
    assert settings.alert_to == ['"Doe, J" <j.doe@x.org>', "oncall@x.org"]
    assert settings.ops_recipients == ["IT on call <it@x.org>"]
    report = Report("PrCRS - all clear", "<p>ok</p>", "ok", {})
    mailer.send_report(
        report,
        host=smtp_sink.host,
        port=smtp_sink.port,
        starttls=False,
        sender=settings.alert_from,
        recipients=settings.alert_to,
    )
    [(sender, recipients, _)] = smtp_sink.handler.received
    assert sender == "prcrs@x.org" and recipients == ["j.doe@x.org", "oncall@x.org"]
    [message] = smtp_sink.messages
    assert message["To"] == '"Doe, J" <j.doe@x.org>, oncall@x.org'
    assert message["Message-ID"].endswith("@x.org>")


def test_ops_to_unset_falls_back_to_the_nights_list(settings_env, monkeypatch):
    monkeypatch.setenv("PRCRS_ALERT_TO", "oncall@x.org")
    monkeypatch.setenv("PRCRS_SILENT_TO", "validation@x.org")
    monkeypatch.setenv("PRCRS_ALERT_MODE", "silent")
    assert load_settings().ops_recipients == ["validation@x.org"]  # silent: never on-call
