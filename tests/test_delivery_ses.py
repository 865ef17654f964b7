"""The Amazon SES transport against moto's SES v2 server (through tests/support/ses.py's proxy)."""

from __future__ import annotations

import email
import email.policy
import logging
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from newsletter.delivery.base import PermanentTransportError
from newsletter.delivery.message import Outcome
from newsletter.delivery.pacing import RatePacer
from newsletter.delivery.retry import RetryPolicy
from newsletter.providers.ses.tags import message_id_from_tag, message_tags
from newsletter.providers.ses.transport import SesTransport

from support.cli import populate
from support.delivery import make_message, make_recipient, make_recipients
from support.ses import (
    ACCESS_KEY,
    REGION,
    SesProxy,
    aws_environment,
    raw_of,
    reset_moto,
    sent_messages,
    start_moto,
    verify_identity,
)

OUR_ID = "nl.0123456789.7.{}@clinic.example"


@pytest.fixture(scope="module")
def moto_url():
    server, url = start_moto()
    yield url
    server.stop()


@pytest.fixture
def moto(moto_url, monkeypatch):
    reset_moto(moto_url)
    verify_identity(moto_url, "clinic.example")
    aws_environment(monkeypatch)
    return moto_url


@pytest.fixture
def proxy(moto):
    with SesProxy(moto, max_send_rate=500) as server:
        yield server


def make_transport(proxy, **options) -> SesTransport:
    options = {"region": REGION, "endpoint_url": proxy.url, "retry": RetryPolicy.no_wait(), "concurrency": 4,
               **options}
    return SesTransport(**options)


def parsed(message: dict) -> email.message.EmailMessage:
    return email.message_from_bytes(raw_of(message), policy=email.policy.default)


def by_message_id(moto_url: str) -> dict[str, email.message.EmailMessage]:
    return {str(m["X-Newsletter-Message-ID"]): m for m in map(parsed, sent_messages(moto_url))}


def test_each_recipient_is_one_raw_message_with_our_headers(proxy, moto):
    recipients = make_recipients(30)
    with make_transport(proxy) as transport:
        results = transport.send_batch(make_message(), recipients)
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 30
    assert len({r.provider_id for r in results}) == 30 and all(r.provider_id for r in results)
    sent = by_message_id(moto)
    assert sorted(sent) == sorted(r.message_id for r in recipients)
    for recipient in recipients:
        message = sent[recipient.message_id]
        assert message["To"].addresses[0].addr_spec == recipient.email
        assert message["List-Unsubscribe"] == recipient.headers["List-Unsubscribe"]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["Message-ID"] == f"<{recipient.message_id}>"
        assert f"Dear {recipient.name}" in message.get_body(("plain",)).get_content()


def test_the_account_rate_is_read_with_get_account(proxy):
    proxy.max_send_rate = 37
    with make_transport(proxy) as transport:
        assert transport.rate == 37 and proxy.account_requests == 1
    with make_transport(proxy, max_send_rate=5) as transport:
        assert transport.rate == 5 and proxy.account_requests == 1  # an override needs no GetAccount


@pytest.mark.parametrize(("rate", "in_flight"), [(1, 4), (14, 4), (200, 40), (1000, 50)])
def test_automatic_concurrency_follows_the_rate(proxy, rate, in_flight):
    proxy.max_send_rate = rate
    with make_transport(proxy, concurrency=0) as transport:
        assert transport.in_flight == in_flight
    with make_transport(proxy, concurrency=7) as transport:
        assert transport.in_flight == 7


def test_tags_and_configuration_set_go_with_each_request(proxy, moto, monkeypatch):
    seen = []
    transport = make_transport(proxy, configuration_set="newsletter-events")
    transport.open()
    original = transport._client.send_email
    monkeypatch.setattr(transport._client, "send_email", lambda **request: seen.append(request) or original(**request))
    recipient = make_recipient(1, message_id=OUR_ID.format(42))
    result, = transport.send_batch(make_message(metadata={"campaign_id": "7"}), [recipient])
    transport.close()
    assert result.outcome is Outcome.QUEUED
    assert seen[0]["ConfigurationSetName"] == "newsletter-events"
    assert seen[0]["EmailTags"] == [{"Name": "newsletter_message", "Value": "nl_0123456789_7_42"},
                                    {"Name": "newsletter_campaign", "Value": "7"}]
    assert seen[0]["Destination"] == {"ToAddresses": ["reader1@example.org"]}


def test_a_tag_round_trips_to_our_message_id():
    tag, = [t for t in message_tags(OUR_ID.format(99), "7") if t["Name"] == "newsletter_message"]
    assert message_id_from_tag(tag["Value"], "clinic.example") == OUR_ID.format(99)
    assert message_tags("c7.s1.abc@clinic.example", "not a tag!") == []  # not ours, not valid: left out
    assert message_id_from_tag("nl_zz_1_2", "x") is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300), st.text(max_size=300))
def test_tags_are_always_values_ses_accepts(message_id, campaign):
    for tag in message_tags(message_id, campaign):
        assert 1 <= len(tag["Value"]) <= 256
        assert all(c.isascii() and (c.isalnum() or c in "_-") for c in tag["Value"])


def test_throttling_is_retried_then_sent_once(proxy, moto):
    proxy.fail_next("throttle", "max-rate", "throttle")
    with make_transport(proxy, concurrency=1) as transport:
        results = transport.send_batch(make_message(), make_recipients(3))
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 3
    assert proxy.requests == 6 and len(sent_messages(moto)) == 3


def test_throttling_until_attempts_run_out_is_failed_and_retryable(proxy, moto):
    proxy.fail_next(*["throttle"] * 4)
    with make_transport(proxy, concurrency=1) as transport:
        result, = transport.send_batch(make_message(), make_recipients(1))
    assert result.outcome is Outcome.FAILED and result.retryable and "TooManyRequestsException" in result.error
    assert sent_messages(moto) == []


def test_a_throttle_waits_through_the_retry_policy(proxy):
    waits = []
    proxy.fail_next("throttle")
    policy = RetryPolicy(sleep=waits.append)
    with make_transport(proxy, concurrency=1, retry=policy) as transport:
        result, = transport.send_batch(make_message(), make_recipients(1))
    assert result.outcome is Outcome.QUEUED and len(waits) == 1 and 0.5 <= waits[0] <= 1.0


@pytest.mark.parametrize("fault", ["500", "503"])
def test_a_5xx_is_retried_then_sent(proxy, moto, fault):
    proxy.fail_next(fault)
    with make_transport(proxy, concurrency=1) as transport:
        result, = transport.send_batch(make_message(), make_recipients(1))
    assert result.outcome is Outcome.QUEUED and len(sent_messages(moto)) == 1


def test_a_gateway_error_is_unknown(proxy, moto):
    proxy.fail_next("502")
    with make_transport(proxy, concurrency=1) as transport:
        result, = transport.send_batch(make_message(), make_recipients(1))
    assert result.outcome is Outcome.UNKNOWN and not result.retryable


def test_a_connection_dropped_after_the_request_is_unknown(proxy, moto):
    proxy.fail_next("drop")
    with make_transport(proxy, concurrency=1) as transport:
        result, = transport.send_batch(make_message(), make_recipients(1))
    assert result.outcome is Outcome.UNKNOWN and "may have been accepted" in result.error


def test_a_refused_connection_is_retried_then_failed(moto):
    from smtp_server import free_port

    transport = SesTransport(region=REGION, endpoint_url=f"http://127.0.0.1:{free_port()}", max_send_rate=10,
                             retry=RetryPolicy.no_wait(max_attempts=2), concurrency=1)
    with transport:
        result, = transport.send_batch(make_message(), make_recipients(1))
    assert result.outcome is Outcome.FAILED and result.retryable and "before sending" in result.error


def test_one_rejected_recipient_fails_alone(proxy, moto):
    recipients = make_recipients(20)
    proxy.refuse.add(recipients[7].email)
    with make_transport(proxy) as transport:
        results = transport.send_batch(make_message(), recipients)
    assert [i for i, r in enumerate(results) if r.outcome is not Outcome.QUEUED] == [7]
    assert results[7].outcome is Outcome.REJECTED and not results[7].retryable
    assert "MessageRejected" in results[7].error and recipients[7].email not in results[7].error
    assert len(sent_messages(moto)) == 19


def test_bad_credentials_stop_the_send_with_a_hint(proxy, monkeypatch, caplog):
    aws_environment(monkeypatch, access_key="AKIAWRONGWRONGWRONG1")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PermanentTransportError) as caught:
        make_transport(proxy).open()
    assert "UnrecognizedClientException" in str(caught.value) and "AWS_ACCESS_KEY_ID" in caught.value.hint
    assert "test-secret-key-not-real" not in caplog.text + str(caught.value) + caught.value.hint


def test_bad_credentials_during_a_batch_keep_what_was_accepted(proxy, moto, monkeypatch):
    recipients = make_recipients(6)
    transport = make_transport(proxy, concurrency=1)
    transport.open()
    original, calls = transport._client.send_email, []

    def revoking(**request):
        calls.append(1)
        if len(calls) == 4:
            proxy.access_key = "AKIAOTHEROTHEROTHER1"  # the key is revoked after three messages
        return original(**request)

    monkeypatch.setattr(transport._client, "send_email", revoking)
    with pytest.raises(PermanentTransportError) as caught:
        transport.send_batch(make_message(), recipients)
    transport.close()
    outcomes = [r.outcome for r in caught.value.results]
    assert outcomes == [Outcome.QUEUED] * 3 + [Outcome.FAILED] * 3
    assert all(r.retryable for r in caught.value.results[3:]) and len(calls) == 4
    assert len(sent_messages(moto)) == 3


def test_an_unverified_sender_stops_with_a_hint(proxy):
    message = make_message(from_email="Other <news@unverified.example>")
    with make_transport(proxy) as transport, pytest.raises(PermanentTransportError) as caught:
        transport.send_batch(message, make_recipients(3))
    assert "verify the sender" in caught.value.hint


def test_the_daily_quota_stops_the_send(proxy):
    proxy.fail_next("quota")
    with make_transport(proxy, concurrency=1) as transport, pytest.raises(PermanentTransportError) as caught:
        transport.send_batch(make_message(), make_recipients(2))
    assert "quota" in str(caught.value)


def test_idn_domains_go_out_idna_encoded(proxy, moto):
    recipient = make_recipient(1, email="zoë@bücher.example")
    ascii_local = make_recipient(2, email="renee@bücher.example", name="Renée « Dupont », \"Jr\"")
    with make_transport(proxy) as transport:
        first, second = transport.send_batch(make_message(), [recipient, ascii_local])
    assert first.outcome is Outcome.REJECTED and "not ASCII" in first.error
    assert second.outcome is Outcome.QUEUED
    message, = sent_messages(moto)
    assert message["destinations"][0] == "renee@xn--bcher-kva.example"
    assert parsed(message)["To"].addresses[0].display_name == "Renée « Dupont », \"Jr\""


def test_a_name_with_line_breaks_goes_out_on_one_line(proxy, moto):
    recipient = make_recipient(1, name="Eve\r\nBcc: victim@example.org")
    with make_transport(proxy) as transport:
        result, = transport.send_batch(make_message(), [recipient])
    assert result.outcome is Outcome.QUEUED
    message = parsed(sent_messages(moto)[0])
    assert message["Bcc"] is None and len(message["To"].addresses) == 1


def test_a_non_ascii_sender_address_stops_with_a_hint(proxy):
    with make_transport(proxy) as transport, pytest.raises(PermanentTransportError) as caught:
        transport.send_batch(make_message(from_email="News <zoë@clinic.example>"), make_recipients(1))
    assert "NEWSLETTER_FROM" in caught.value.hint


def test_too_many_recipients_for_one_batch(proxy):
    with make_transport(proxy) as transport, pytest.raises(ValueError):
        transport.send_batch(make_message(), make_recipients(SesTransport.max_batch + 1))


def test_requests_run_in_parallel(proxy, moto, monkeypatch):
    in_flight, most = 0, 0
    lock = threading.Lock()
    release = threading.Barrier(4, timeout=10)
    transport = make_transport(proxy, concurrency=4)
    transport.open()
    original = transport._client.send_email

    def counting(**request):
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        release.wait()  # returns only when four requests are in flight at once
        try:
            return original(**request)
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(transport._client, "send_email", counting)
    results = transport.send_batch(make_message(), make_recipients(8))
    transport.close()
    assert most == 4 and all(r.outcome is Outcome.QUEUED for r in results)


def test_the_pacer_keeps_many_threads_under_the_rate():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)

    pacer = RatePacer(100, clock=lambda: now[0], sleep=sleep)
    for _ in range(50):
        pacer.take()
    # 50 slots at 100/s from t=0: the last one waits 0.49 s
    assert max(slept) == pytest.approx(0.49) and len(slept) == 49


def test_the_pacer_credits_no_idle_time():
    """After 10 s idle, 30 slots at 100/s: the first is free, the others wait their turn (no burst)."""
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    pacer = RatePacer(100, clock=lambda: now[0], sleep=sleep)
    pacer.take()
    now[0] = 10.0
    sent = []
    for _ in range(30):
        pacer.take()
        sent.append(now[0])
    assert sent[0] == 10.0
    assert sent[-1] == pytest.approx(10.29)
    # counted per 0.1 s window from the end of the pause: the rate's 10 in each, nothing saved up
    per_window = [sum(1 for t in sent if 10.0 + k / 10 - 1e-9 <= t < 10.0 + (k + 1) / 10 - 1e-9) for k in range(3)]
    assert per_window == [10, 10, 10]


def test_settings_build_the_transport(workspace, monkeypatch):
    from newsletter.config import load_settings
    from newsletter.delivery import get_transport

    config = workspace / "newsletter.toml"
    assert "\n[ses]\n" in config.read_text()  # newsletter init writes the section, its keys commented out
    config.write_text(config.read_text().replace("\n[ses]\n", (
        '\n[ses]\nregion = "eu-west-1"\nconfiguration_set = "events"\nmax_send_rate = 12\nconcurrency = 3\n')))
    monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", "http://127.0.0.1:9/")
    transport = get_transport(load_settings(), "ses")
    assert (transport.region, transport.endpoint_url, transport.configuration_set) == \
        ("eu-west-1", "http://127.0.0.1:9", "events")
    assert (transport.max_send_rate, transport.concurrency) == (12, 3)


def test_a_campaign_of_2000_through_the_cli_reaches_each_recipient_once(workspace, cli, tmp_path, proxy, moto,
                                                                        monkeypatch):
    emails = populate(cli, tmp_path, 2000)
    monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("NEWSLETTER_SES_REGION", REGION)
    proxy.max_send_rate = 1000
    proxy.fail_next("throttle", "500", "throttle")
    monkeypatch.setattr("newsletter.delivery.retry.pause", lambda seconds: None)
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "ses", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["status"] == "sent" and result.json()["counts"]["sent"] == 2000, result.stdout
    sent = [parsed(m) for m in sent_messages(moto)]
    assert sorted(m["To"].addresses[0].addr_spec for m in sent) == sorted(emails)
    assert len({str(m["X-Newsletter-Message-ID"]) for m in sent}) == 2000
    for message in sent:
        assert message["List-Unsubscribe"].startswith("<https://news.clinic.example/unsubscribe/")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["Message-ID"] == f"<{message['X-Newsletter-Message-ID']}>"
    assert proxy.requests == 2003
    again = cli("campaigns", "resume", "1", "--json")
    assert len(sent_messages(moto)) == 2000, again.stdout


def test_bad_credentials_through_the_cli_are_one_line(workspace, cli, tmp_path, proxy, monkeypatch):
    populate(cli, tmp_path, 3)
    aws_environment(monkeypatch, access_key="AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("NEWSLETTER_SES_ENDPOINT_URL", proxy.url)
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "ses")
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert "AWS_ACCESS_KEY_ID" in result.stderr and ACCESS_KEY not in result.stderr


@settings(max_examples=60, deadline=None)
@given(rate=st.floats(1, 500), pauses=st.lists(st.floats(0, 2), min_size=1, max_size=300))
def test_the_pacer_never_runs_ahead_of_its_rate(rate, pauses):
    """Whatever the idle gaps, two slots are at least ``1 / rate`` apart: no saving, no burst."""
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    pacer = RatePacer(rate, clock=lambda: now[0], sleep=sleep)
    sent = []
    for pause in pauses:
        now[0] += pause  # the engine recording a batch, a slow request...
        pacer.take()
        sent.append(now[0])
    for earlier, later in zip(sent, sent[1:], strict=False):
        assert later - earlier >= 1 / rate - 1e-9
    if len(sent) > 1 and not any(pauses[1:]):  # no pauses: exactly the rate
        assert sent[-1] - sent[0] == pytest.approx((len(sent) - 1) / rate)
