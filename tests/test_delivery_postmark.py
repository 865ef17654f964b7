"""The Postmark transport against a local server speaking its batch email API (tests/fake_postmark.py)."""

from __future__ import annotations

import json
import logging
from email.utils import formataddr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from newsletter.delivery.base import PermanentTransportError
from newsletter.delivery.merge import MergeTemplate
from newsletter.delivery.message import Outcome
from newsletter.delivery.retry import RetryPolicy
from newsletter.errors import ConfigError, DeliveryError
from newsletter.providers.postmark import body as pm_body
from newsletter.providers.postmark.body import BatchBuilder, JsonTemplate, chunks, metadata, payload
from newsletter.providers.postmark.transport import PostmarkTransport

from fake_postmark import FakePostmark, message_error, parse_mailbox
from support.cli import populate
from support.delivery import make_message, make_recipient, make_recipients

TOKEN = "pm-0123456789abcdef-server-token"


class FakeClock:
    """Time that moves only when the transport sleeps."""

    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def server():
    with FakePostmark(token=TOKEN, inactive=["gone@example.org"]) as fake:
        yield fake


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def transport(server, clock):
    policy = RetryPolicy(max_attempts=3, sleep=clock.sleep, clock=clock.time)
    with PostmarkTransport(TOKEN, host=server.url, timeout=5, retry=policy) as pm:
        yield pm


def test_one_request_carries_five_hundred_messages_each_accepted(server, transport):
    recipients = make_recipients(500)
    results = transport.send_batch(make_message(), recipients)
    assert server.requests == 1
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 500
    assert [r.message_id for r in results] == [r.message_id for r in recipients]
    assert len({r.provider_id for r in results}) == 500 and all(r.provider_id for r in results)
    assert server.delivered == [f'"Reader {i}" <reader{i}@example.org>' for i in range(500)]


def test_each_message_is_merged_for_its_recipient_with_our_headers_and_metadata(server, transport):
    recipient = make_recipient(3, name='Ann "A" <B> & Co', merge_data={
        "name": 'Ann <b>&"', "unsubscribe_url": "https://news.clinic.example/u/3"})
    transport.send_batch(make_message(), [recipient])
    (sent,) = server.messages
    assert sent["From"] == '"Clinic News" <news@clinic.example>'
    assert parse_mailbox(sent["To"]) == ('Ann "A" <B> & Co', "reader3@example.org")
    assert sent["Subject"] == 'News for Ann <b>&"'
    assert "Dear Ann &lt;b&gt;&amp;&quot;," in sent["HtmlBody"]
    assert '<a href="https://news.clinic.example/u/3">' in sent["HtmlBody"]
    assert sent["TextBody"].startswith('Dear Ann <b>&",') and "https://news.clinic.example/u/3" in sent["TextBody"]
    assert sent["MessageStream"] == "broadcast" and sent["Tag"] == "newsletter"
    headers = {h["Name"]: h["Value"] for h in sent["Headers"]}
    assert headers["List-Unsubscribe"] == "<https://news.clinic.example/unsubscribe/token3>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["Message-ID"] == f"<{recipient.message_id}>"
    assert sent["Metadata"] == {"message_id": recipient.message_id, "campaign_id": "7", "subscriber_id": "3"}


def test_the_message_stream_is_a_setting(server, clock):
    with PostmarkTransport(TOKEN, host=server.url, stream="outbound", retry=RetryPolicy.no_wait()) as pm:
        pm.send_batch(make_message(), [make_recipient(1)])
    assert server.messages[0]["MessageStream"] == "outbound"
    with PostmarkTransport(TOKEN, host=server.url, stream="newsletters", retry=RetryPolicy.no_wait()) as pm:
        (result,) = pm.send_batch(make_message(), [make_recipient(2)])
    assert result.outcome is Outcome.REJECTED and "ErrorCode 1235" in result.error


def test_an_inactive_recipient_is_rejected_alone(server, transport):
    recipients = [make_recipient(0), make_recipient(1, email="gone@example.org"), make_recipient(2)]
    results = transport.send_batch(make_message(), recipients)
    assert [r.outcome for r in results] == [Outcome.QUEUED, Outcome.REJECTED, Outcome.QUEUED]
    assert results[1].error.startswith("406 inactive recipient") and not results[1].retryable
    assert server.requests == 1 and len(server.delivered) == 2


def test_an_address_postmark_calls_invalid_is_rejected_alone(server, transport):
    server.refuse = {"reader1@example.org"}  # an address Postmark's own check refuses: ErrorCode 300
    results = transport.send_batch(make_message(), make_recipients(3))
    assert [r.outcome for r in results] == [Outcome.QUEUED, Outcome.REJECTED, Outcome.QUEUED]
    assert results[1].error.startswith("Postmark ErrorCode 300") and not results[1].retryable
    assert server.requests == 1 and len(server.delivered) == 2


def test_the_stand_in_refuses_what_postmark_refuses():
    def code(**fields):
        message = {"From": "a@b.org", "To": "c@d.org", "TextBody": "x", **fields}
        error = message_error(message, {"outbound"}, {"gone@d.org"})
        return error and error[0]

    assert code() is None
    assert code(To="not an address") == 300 and code(To="zoë@d.org") == 300 and code(From="") == 300
    assert code(TextBody="") == 300 and code(To=",".join(f"r{i}@d.org" for i in range(51))) == 300
    assert code(Metadata={"k": "v" * 81}) == 300 and code(Metadata={"a": "1", "A": "2"}) == 300
    assert code(Headers=[{"Name": "X", "Value": 1}]) == 300 and code(Tag="t" * 1001) == 300
    assert code(MessageStream="nope") == 1235 and code(To='"Gone" <gone@d.org>') == 406


def test_metadata_stays_within_postmarks_limits():
    long_id = "nl.0123456789.12.34@" + "d" * 70 + ".example"
    meta = metadata({"campaign_id": "7", "a" * 21: "x"}, {"Campaign_ID": "8", "big": "v" * 81,
                                                          **{f"k{i}": str(i) for i in range(12)}}, long_id)
    assert meta["message_id"] == "nl.0123456789.12.34@"
    assert meta["campaign_id"] == "7" and "Campaign_ID" not in meta
    assert len(meta) == 10 and all(len(k) <= 20 and len(v) <= 80 for k, v in meta.items())


def test_429_is_retried_after_a_wait_then_succeeds(server, transport, clock):
    server.fail_next(429)
    results = transport.send_batch(make_message(), make_recipients(3))
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 3
    assert server.requests == 2 and len(clock.sleeps) == 1 and len(server.delivered) == 3


@pytest.mark.parametrize("fault", [429, "item-429"])
def test_a_rate_limit_goes_through_the_policys_shared_rate_limit_wait(server, clock, fault):
    """Scale-out workers pause together through ``rate_limit_wait`` (distributed.limits.SharedPausePolicy)."""
    asked: list[str | None] = []

    class Recording(RetryPolicy):
        def rate_limit_wait(self, reset, attempt):
            asked.append(reset)
            return super().rate_limit_wait(reset, attempt)

    server.fail_next(fault)
    start = clock.now
    with PostmarkTransport(TOKEN, host=server.url, retry=Recording(sleep=clock.sleep, clock=clock.time)) as pm:
        results = pm.send_batch(make_message(), make_recipients(2))
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 2
    # The whole-request 429 carries Retry-After: 0 (a reset of "now"); a message's ErrorCode 429 carries none.
    assert asked == ([str(start)] if fault == 429 else [None])


def test_a_message_refused_with_errorcode_429_goes_again_alone(server, transport, clock):
    server.fail_next("item-429")
    results = transport.send_batch(make_message(), make_recipients(3))
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 3
    assert server.requests == 2 and len(clock.sleeps) == 1
    assert sorted(server.delivered) == sorted(f'"Reader {i}" <reader{i}@example.org>' for i in range(3))


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_retried_with_backoff_then_succeeds(server, transport, clock, status):
    server.fail_next(status)
    results = transport.send_batch(make_message(), make_recipients(2))
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 2 and server.requests == 2 and len(clock.sleeps) == 1


def test_5xx_until_attempts_run_out_is_failed_and_retryable(server, transport, clock):
    server.fail_next(500, times=3)
    results = transport.send_batch(make_message(), make_recipients(2))
    assert server.requests == 3 and len(clock.sleeps) == 2
    assert all(r.outcome is Outcome.FAILED and r.retryable for r in results)
    assert server.delivered == []


def test_gateway_errors_are_unknown(server, transport):
    server.fail_next(504)
    results = transport.send_batch(make_message(), make_recipients(1))
    assert results[0].outcome is Outcome.UNKNOWN and server.requests == 1


def test_a_dropped_connection_after_the_body_is_unknown(server, transport, clock):
    server.fail_next("drop")
    results = transport.send_batch(make_message(), make_recipients(2))
    assert server.requests == 1 and clock.sleeps == []
    assert all(r.outcome is Outcome.UNKNOWN and not r.retryable for r in results)


def test_a_slow_answer_past_the_timeout_is_unknown(server, clock):
    server.fail_next("slow")
    with PostmarkTransport(TOKEN, host=server.url, timeout=0.2, retry=RetryPolicy(sleep=clock.sleep)) as pm:
        results = pm.send_batch(make_message(), make_recipients(1))
    server.release()
    assert results[0].outcome is Outcome.UNKNOWN


def test_a_refused_connection_is_retried_then_failed(clock):
    from smtp_server import free_port

    policy = RetryPolicy(max_attempts=2, sleep=clock.sleep, clock=clock.time)
    with PostmarkTransport(TOKEN, host=f"http://127.0.0.1:{free_port()}", retry=policy) as pm:
        results = pm.send_batch(make_message(), make_recipients(2))
    assert len(clock.sleeps) == 1
    assert all(r.outcome is Outcome.FAILED and r.retryable for r in results)
    assert "before sending" in results[0].error


def test_a_bad_token_stops_with_a_hint_and_never_shows_the_token(server, clock, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    wrong = "pm-wrong-wrong-wrong-token"
    with PostmarkTransport(wrong, host=server.url, retry=RetryPolicy(sleep=clock.sleep)) as pm:
        with pytest.raises(PermanentTransportError) as info:
            pm.send_batch(make_message(), make_recipients(2))
        assert wrong not in repr(pm)
    error = info.value
    assert isinstance(error, DeliveryError) and error.status == 401
    assert "POSTMARK_SERVER_TOKEN" in error.hint and server.requests == 1
    captured = capsys.readouterr()
    for text in (str(error), error.hint, repr(error), caplog.text, captured.out, captured.err):
        assert wrong not in text


def test_an_unconfirmed_sender_stops_with_a_hint(server, transport):
    server.fail_next(422)
    with pytest.raises(PermanentTransportError) as info:
        transport.send_batch(make_message(), make_recipients(2))
    assert "NEWSLETTER_FROM" in info.value.hint and "ErrorCode 400" in str(info.value)


def test_a_missing_token_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        PostmarkTransport("")
    assert "POSTMARK_SERVER_TOKEN" in info.value.hint


def test_too_many_recipients_for_one_batch(transport):
    with pytest.raises(ValueError):
        transport.send_batch(make_message(), make_recipients(501))


def test_a_large_batch_is_split_under_the_50_mb_request_limit(server, clock, monkeypatch):
    monkeypatch.setattr(pm_body, "MAX_REQUEST_BYTES", 40_000)  # the same split, at a size a test can afford
    with PostmarkTransport(TOKEN, host=server.url, retry=RetryPolicy.no_wait()) as pm:
        results = pm.send_batch(make_message(), make_recipients(30))
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 30
    assert server.requests > 1 and len(server.delivered) == 30 == len(set(server.delivered))
    entries, _ = BatchBuilder(make_message(), "broadcast").entries(make_recipients(30))
    assert all(len(payload(group)) <= 40_000 for group in chunks(entries))


def test_a_bad_token_on_a_later_request_keeps_what_was_accepted(server, clock, monkeypatch):
    monkeypatch.setattr(pm_body, "MAX_REQUEST_BYTES", 40_000)
    with PostmarkTransport(TOKEN, host=server.url, retry=RetryPolicy.no_wait()) as pm:
        server.token = TOKEN
        entries, _ = BatchBuilder(make_message(), "broadcast").entries(make_recipients(30))
        first = len(chunks(entries)[0])
        original = server.answer

        def revoke_after_first(messages):  # the token is revoked while the send runs
            server.token = "revoked"
            return original(messages)

        server.answer = revoke_after_first
        with pytest.raises(PermanentTransportError) as info:
            pm.send_batch(make_message(), make_recipients(30))
    results = info.value.results
    assert [r.outcome for r in results[:first]] == [Outcome.QUEUED] * first
    assert all(r.outcome is Outcome.FAILED and r.retryable for r in results[first:])


def test_a_bad_token_on_a_retry_keeps_what_the_first_attempt_accepted(server, clock):
    server.fail_next("item-429")
    server.fail_next(401)
    with PostmarkTransport(TOKEN, host=server.url, retry=RetryPolicy(sleep=clock.sleep, clock=clock.time)) as pm:
        with pytest.raises(PermanentTransportError) as info:
            pm.send_batch(make_message(), make_recipients(3))
    results = info.value.results
    assert results[0].outcome is Outcome.FAILED and results[0].retryable
    assert [r.outcome for r in results[1:]] == [Outcome.QUEUED] * 2 and len(server.delivered) == 2


# -- hostile addresses and names --

def test_idn_domains_go_out_idna_encoded(server, transport):
    (result,) = transport.send_batch(make_message(), [make_recipient(1, email="ann@Bücher.example", name="")])
    assert result.outcome is Outcome.QUEUED and server.delivered == ["ann@xn--bcher-kva.example"]


def test_a_non_ascii_local_part_fails_alone_before_the_request(server, transport):
    results = transport.send_batch(make_message(), [make_recipient(0), make_recipient(1, email="zoë@example.org")])
    assert results[0].outcome is Outcome.QUEUED and results[1].outcome is Outcome.REJECTED
    assert "SMTPUTF8" in results[1].error and len(server.delivered) == 1


@pytest.mark.parametrize("name", ["Dupont, Renée", "A; B"])
def test_names_with_commas_or_semicolons_go_out_without_the_name(server, transport, name):
    (result,) = transport.send_batch(make_message(), [make_recipient(1, name=name)])
    assert result.outcome is Outcome.QUEUED and server.delivered == ["reader1@example.org"]


def test_a_name_with_line_breaks_goes_out_clean(server, transport):
    transport.send_batch(make_message(), [make_recipient(1, name="Ann\r\nBcc: x@evil.example")])
    assert server.delivered == ['"Ann Bcc: x@evil.example" <reader1@example.org>']


def test_a_non_ascii_sender_name_goes_out_as_utf8(server, transport):
    sender = formataddr(("Clínica Saúde", "news@clinic.example"))  # an RFC 2047 word, as Settings.sender writes it
    transport.send_batch(make_message(from_email=sender, reply_to=formataddr(("Recepção", "desk@clinic.example"))),
                         [make_recipient(1)])
    assert server.messages[0]["From"] == '"Clínica Saúde" <news@clinic.example>'
    assert server.messages[0]["ReplyTo"] == '"Recepção" <desk@clinic.example>'


def test_a_non_ascii_sender_address_stops_with_a_hint(server, transport):
    with pytest.raises(PermanentTransportError) as info:
        transport.send_batch(make_message(from_email="Clinic <équipe@clinic.example>"), [make_recipient(1)])
    assert "NEWSLETTER_FROM" in info.value.hint and server.requests == 0


def test_a_line_break_merged_into_the_subject_gives_a_one_line_subject(server, transport):
    transport.send_batch(make_message(), [make_recipient(1, merge_data={"name": "Ann\r\nBcc: x@evil.example"})])
    assert server.messages[0]["Subject"] == "News for Ann Bcc: x@evil.example"


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(template=st.lists(st.one_of(_text, st.sampled_from(["%%name%%", "%%name:raw%%", "%%first_name%%",
                                                             "%%x%%"])), max_size=8).map("".join),
       values=st.dictionaries(st.sampled_from(["name", "x", "email"]), _text, max_size=3))
def test_json_template_renders_exactly_what_json_dumps_of_the_merge_would(template, values):
    expected = json.dumps(MergeTemplate(template).render(values))[1:-1]
    assert JsonTemplate(template).render(values) == expected
    pieces: list[bytes] = []
    JsonTemplate(template).render_into(pieces, values)
    assert b"".join(pieces) == expected.encode("ascii")


@settings(max_examples=100, deadline=None)
@given(name=st.text(max_size=80), local=st.from_regex(r"[a-z0-9.+_-]{1,20}", fullmatch=True),
       domain=st.sampled_from(["example.org", "Bücher.example", "xn--bcher-kva.example", "ÉCOLE.fr"]))
def test_every_name_and_address_is_either_refused_alone_or_parsed_back_by_the_stand_in(name, local, domain):
    builder = BatchBuilder(make_message(), "broadcast")
    recipient = make_recipient(1, email=f"{local}@{domain}", name=name)
    entries, results = builder.entries([recipient])
    if results[0] is not None:
        assert results[0].outcome is Outcome.REJECTED
        return
    (message,) = json.loads(payload(entries))
    assert message_error(message, {"broadcast"}, set()) is None, message["To"]
    parsed_name, address = parse_mailbox(message["To"])
    assert address.split("@")[0] == local
    assert "\r" not in parsed_name and "\n" not in parsed_name


# -- end to end through `newsletter send --transport postmark` --

@pytest.fixture
def fast_retries(monkeypatch):
    from newsletter.delivery import retry

    waits: list[float] = []
    monkeypatch.setattr(retry, "pause", waits.append)
    return waits


def test_a_campaign_reaches_each_recipient_exactly_once(workspace, cli, tmp_path, monkeypatch, server,
                                                        fast_retries):
    emails = populate(cli, tmp_path, 1200)
    monkeypatch.setenv("POSTMARK_SERVER_TOKEN", TOKEN)
    monkeypatch.setenv("NEWSLETTER_POSTMARK_HOST", server.url)
    server.fail_next(429)
    server.fail_next("item-429")
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "postmark", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["status"] == "sent" and result.json()["sent"] == 1200
    addresses = [parse_mailbox(to)[1] for to in server.delivered]
    assert sorted(addresses) == sorted(emails) and len(set(addresses)) == 1200
    assert all(m["MessageStream"] == "broadcast" for m in server.messages)
    first = server.messages[0]
    headers = {h["Name"]: h["Value"] for h in first["Headers"]}
    assert headers["List-Unsubscribe"].startswith("<https://news.clinic.example/") and \
        headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first["Metadata"]["message_id"].startswith("nl.") and headers["Message-ID"] == \
        f"<{first['Metadata']['message_id']}>"
    assert TOKEN not in result.stdout + result.stderr


def test_a_bad_token_stops_the_send_with_a_one_line_hint(workspace, cli, tmp_path, monkeypatch, server):
    populate(cli, tmp_path, 3)
    monkeypatch.setenv("POSTMARK_SERVER_TOKEN", "pm-not-the-token")
    monkeypatch.setenv("NEWSLETTER_POSTMARK_HOST", server.url)
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "postmark")
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert "POSTMARK_SERVER_TOKEN" in result.stderr and "pm-not-the-token" not in result.stderr + result.stdout
    assert server.delivered == []


def test_a_dropped_request_leaves_rows_unknown_until_resent_on_purpose(workspace, cli, tmp_path, monkeypatch,
                                                                      server, fast_retries):
    emails = populate(cli, tmp_path, 5)
    monkeypatch.setenv("POSTMARK_SERVER_TOKEN", TOKEN)
    monkeypatch.setenv("NEWSLETTER_POSTMARK_HOST", server.url)
    server.fail_next("drop")
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "postmark", "--json")
    assert result.json()["counts"]["unknown"] == 5 and server.delivered == []
    assert "campaigns retry 1 --unknown" in result.stderr
    retried = cli("campaigns", "retry", "1", "--unknown", "--json")
    assert retried.exit_code == 0 and retried.json()["status"] == "sent"
    assert sorted(parse_mailbox(to)[1] for to in server.delivered) == sorted(emails)


@pytest.mark.parametrize(("code", "hint"), [(405, "account"), (412, "account"), (413, "account"),
                                            (400, "NEWSLETTER_FROM"), (401, "NEWSLETTER_FROM")])
def test_a_422_that_every_request_would_get_stops_with_a_hint(server, transport, monkeypatch, code, hint):
    import fake_postmark

    monkeypatch.setattr(fake_postmark, "FAULT_422_CODE", code)
    server.fail_next(422)
    with pytest.raises(PermanentTransportError) as info:
        transport.send_batch(make_message(), make_recipients(2))
    assert hint in info.value.hint and f"ErrorCode {code}" in str(info.value)
    assert server.delivered == [] and server.requests == 1


def test_another_422_rejects_the_requests_recipients_only(server, transport, monkeypatch):
    import fake_postmark

    monkeypatch.setattr(fake_postmark, "FAULT_422_CODE", 402)  # invalid JSON: this request, not the next
    server.fail_next(422)
    results = transport.send_batch(make_message(), make_recipients(2))
    assert all(r.outcome is Outcome.REJECTED and "ErrorCode 402" in r.error for r in results)
    assert transport.send_batch(make_message(), [make_recipient(5)])[0].outcome is Outcome.QUEUED
