"""The transport registry, our Message-ID format, and SendGrid's events parsed into the neutral model."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from newsletter import transports as registry
from newsletter.delivery import get_transport, message_id, transport_class
from newsletter.errors import ConfigError
from newsletter.events.pipeline import suppression_reason
from newsletter.providers.sendgrid.events import tracking_event
from newsletter.tracking import EventKind, RejectReason

# -- the registry --------------------------------------------------------------------------------


def test_every_list_of_transports_comes_from_the_registry():
    import click
    from newsletter import config
    from newsletter.cli import cli

    def choices(name: str) -> tuple[str, ...]:
        command = cli.get_command(click.Context(cli), name)
        return tuple(next(p for p in command.params if p.name == "transport").type.choices)

    assert registry.names() == ("sendgrid", "postmark", "mailgun", "ses", "smtp", "file", "console", "memory")
    assert config.TRANSPORTS == registry.names()
    assert choices("send") == choices("schedule") == registry.names()
    # memory is for tests: init does not offer it
    assert choices("init") == ("sendgrid", "postmark", "mailgun", "ses", "smtp", "file", "console")


@pytest.mark.parametrize("name", registry.names())
def test_each_registered_transport_loads_under_its_own_name(name):
    assert transport_class(name).name == name


def test_unknown_transport_is_a_config_error_listing_the_registered_ones():
    with pytest.raises(ConfigError) as info:
        get_transport(object(), "pigeon")
    assert "pigeon" in info.value.message
    assert "sendgrid, postmark, mailgun, ses, smtp, file, console, memory" in info.value.hint


def test_providers_declare_their_settings_section_and_environment():
    from newsletter.config import ENV_OVERRIDES

    overrides = registry.env_overrides()
    assert {k: v for k, v in overrides.items() if k[0] != "ses"} == {
        ("sendgrid", "host"): "NEWSLETTER_SENDGRID_HOST",
        ("sendgrid", "webhook_key"): "NEWSLETTER_SENDGRID_WEBHOOK_KEY",
        ("postmark", "host"): "NEWSLETTER_POSTMARK_HOST",
        ("postmark", "message_stream"): "NEWSLETTER_POSTMARK_MESSAGE_STREAM",
        ("postmark", "webhook_user"): "NEWSLETTER_POSTMARK_WEBHOOK_USER",
        ("mailgun", "domain"): "NEWSLETTER_MAILGUN_DOMAIN",
        ("mailgun", "region"): "NEWSLETTER_MAILGUN_REGION",
        ("mailgun", "host"): "NEWSLETTER_MAILGUN_HOST",
        ("smtp", "url"): "NEWSLETTER_SMTP_URL",
        ("smtp", "ehlo_name"): "NEWSLETTER_SMTP_EHLO_NAME",
        ("smtp", "return_path"): "NEWSLETTER_SMTP_RETURN_PATH",
        ("smtp", "verp"): "NEWSLETTER_SMTP_VERP"}
    assert all(var.startswith("NEWSLETTER_SES_") for (section, _key), var in overrides.items() if section == "ses")
    assert registry.env_overrides().items() <= ENV_OVERRIDES.items()
    assert registry.PROVIDERS["sendgrid"].secrets == ("SENDGRID_API_KEY",)
    assert registry.PROVIDERS["postmark"].secrets == ("POSTMARK_SERVER_TOKEN", "NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD")
    assert registry.PROVIDERS["mailgun"].secrets == ("MAILGUN_API_KEY", "MAILGUN_WEBHOOK_SIGNING_KEY")
    assert registry.event_provider_names() == ("sendgrid", "postmark", "mailgun", "ses")
    assert "ses" not in registry.process_safe_names()  # its pacing to the SES rate lives in one process
    assert registry.event_source_class("smtp") is None and registry.event_source_class("nosuch") is None
    assert "memory" not in registry.process_safe_names() and "sendgrid" in registry.process_safe_names()


# -- our Message-ID ------------------------------------------------------------------------------

def test_message_id_format_and_parse_round_trip():
    template = message_id.id_template("key-one", 42, "News <news@clinic.example>".split("<")[-1].rstrip(">"),
                                      nonce="0123456789abcdef")
    made = template.format(7)
    assert made == f"nl.{message_id.tag('key-one')}.42.7.0123456789abcdef@clinic.example"
    assert message_id.parse(made, message_id.tags(["key-two", "key-one"])) == message_id.OurMessageId(42, 7)


@pytest.mark.parametrize("text", [
    None, "", "hello@example.org", "nl.0000000000.1.2@clinic.example",  # not our tag
    "nl.{tag}.0.2@x", "nl.{tag}.1.2147483648@x", "nl.{tag}.1.999999999999@x", "nl.{tag}.1.2",
])
def test_message_ids_that_are_not_ours_or_name_no_possible_row_parse_to_none(text):
    tag = message_id.tag("key-one")
    assert message_id.parse(text and text.format(tag=tag), message_id.tags(["key-one"])) is None


def test_message_id_at_the_largest_possible_row_still_parses():
    tag = message_id.tag("k")
    parsed = message_id.parse(f"nl.{tag}.{message_id.MAX_ID}.{message_id.MAX_ID}@x", frozenset({tag}))
    assert parsed == message_id.OurMessageId(message_id.MAX_ID, message_id.MAX_ID)


# -- SendGrid events as tracking events ------------------------------------------------------------

@pytest.mark.parametrize("raw_kind, kind", [
    ("processed", EventKind.QUEUED), ("delivered", EventKind.DELIVERED), ("deferred", EventKind.DEFERRED),
    ("bounce", EventKind.BOUNCED), ("dropped", EventKind.REJECTED), ("open", EventKind.OPENED),
    ("click", EventKind.CLICKED), ("spamreport", EventKind.COMPLAINED), ("unsubscribe", EventKind.UNSUBSCRIBED),
    ("group_unsubscribe", EventKind.UNSUBSCRIBED), ("group_resubscribe", EventKind.RESUBSCRIBED),
    ("something_new", EventKind.OTHER),
])
def test_sendgrid_event_names_map_to_our_kinds(raw_kind, kind):
    assert tracking_event({"event": raw_kind, "email": "a@example.org", "sg_event_id": "e1"}).kind is kind


def test_a_sendgrid_event_keeps_its_ids_time_recipient_detail_and_raw_form():
    raw = {"event": "bounce", "email": " A@Example.org ", "sg_event_id": "e1", "timestamp": 1_790_000_000,
           "message_id": "nl.abc.1.2@x", "type": "bounce", "reason": "550 5.1.1 no such user"}
    event = tracking_event(raw)
    assert (event.provider, event.event_id, event.recipient, event.message_id) == ("sendgrid", "e1", "A@Example.org",
                                                                                    "nl.abc.1.2@x")
    assert event.occurred_at == datetime.fromtimestamp(1_790_000_000, UTC)
    assert event.detail == "bounce 550 5.1.1 no such user" and event.raw is raw and event.hard is True


def test_a_blocked_bounce_is_soft_and_does_not_suppress():
    event = tracking_event({"event": "bounce", "email": "a@example.org", "type": "blocked", "sg_event_id": "e"})
    assert event.hard is False and suppression_reason(event) is None


@pytest.mark.parametrize("reason, normalised, suppressed", [
    ("Bounced Address", RejectReason.BOUNCED, "bounced"),
    ("Spam Reporting Address", RejectReason.COMPLAINED, "complained"),
    ("Unsubscribed Address", RejectReason.UNSUBSCRIBED, None), ("Invalid", RejectReason.INVALID, None),
    ("Something else", RejectReason.OTHER, None),
])
def test_a_drop_names_its_reason_and_suppresses_only_for_bounces_and_complaints(reason, normalised, suppressed):
    event = tracking_event({"event": "dropped", "email": "a@example.org", "reason": reason, "sg_event_id": "e"})
    assert event.reject_reason is normalised and suppression_reason(event) == suppressed


def test_an_event_without_an_id_gets_a_stable_fingerprint_and_odd_fields_are_cleaned():
    raw = {"event": "open", "email": "a\x00@example.org", "timestamp": "yesterday"}
    first, again = tracking_event(raw), tracking_event(dict(raw))
    assert first.event_id.startswith("sha256:") and first.event_id == again.event_id
    assert first.recipient == "a@example.org" and first.occurred_at is None
    assert tracking_event({**raw, "email": "b@example.org"}).event_id != first.event_id
