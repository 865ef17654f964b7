"""The SendGrid transport against a local server speaking the v3 Mail Send API."""

from __future__ import annotations

import logging

import pytest
from newsletter.delivery.base import PermanentTransportError
from newsletter.delivery.message import Outcome
from newsletter.delivery.retry import RetryPolicy
from newsletter.errors import ConfigError, DeliveryError
from newsletter.providers.sendgrid.body import build_body
from newsletter.providers.sendgrid.transport import SendGridTransport

from fake_sendgrid import FakeSendGrid, limit_errors
from support.delivery import make_message, make_recipient, make_recipients

KEY = "SG.abcdefghijkl.mnopqrstuvwxyz0123456789"


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
    with FakeSendGrid(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def transport(server, clock):
    policy = RetryPolicy(max_attempts=3, sleep=clock.sleep, clock=clock.time)
    with SendGridTransport(KEY, host=server.url, timeout=5, retry=policy) as sg:
        yield sg


def test_one_request_carries_a_thousand_recipients_and_passes_the_spec(server, transport):
    recipients = make_recipients(1000)
    results = transport.send_batch(make_message(), recipients)
    assert server.requests == 1
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 1000
    assert [r.message_id for r in results] == [r.message_id for r in recipients]
    assert len({r.provider_id for r in results}) == 1 and results[0].provider_id
    body = server.bodies[0]
    assert len(body["personalizations"]) == 1000
    assert [p["to"][0]["email"] for p in body["personalizations"]] == [r.email for r in recipients]
    assert server.check(body) == []


def test_body_shares_content_and_personalises_each_recipient(server, transport):
    recipient = make_recipient(3, name='Ann "A" <B> & Co', merge_data={"name": 'Ann <b>&"'})
    transport.send_batch(make_message(), [recipient])
    body = server.bodies[0]
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert "%%name%%" in body["content"][1]["value"] and body["subject"] == "News for %%name:raw%%"
    assert body["categories"] == ["newsletter", "campaign-7"]
    (p,) = body["personalizations"]
    assert p["to"] == [{"email": "reader3@example.org", "name": 'Ann "A" <B> & Co'}]
    assert p["substitutions"]["%%name%%"] == "Ann &lt;b&gt;&amp;&quot;"
    assert p["substitutions"]["%%name:raw%%"] == 'Ann <b>&"'
    # The template uses unsubscribe_url, the recipient has none: blank, never the raw token.
    assert p["substitutions"]["%%unsubscribe_url%%"] == ""
    assert p["headers"]["List-Unsubscribe"] == "<https://news.clinic.example/unsubscribe/token3>"
    assert p["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert p["headers"]["X-Newsletter-Message-ID"] == recipient.message_id
    assert p["custom_args"] == {"campaign_id": "7", "subscriber_id": "3", "message_id": recipient.message_id}
    assert "mail_settings" not in body


def test_custom_args_and_header_values_are_strings():
    message = make_message(metadata={"campaign_id": 7})
    recipient = make_recipient(1, metadata={"subscriber_id": 1}, headers={"X-Count": 3})
    body, included, _ = build_body(message, [recipient])
    (p,) = body["personalizations"]
    assert included == [0]
    assert all(isinstance(v, str) for v in p["custom_args"].values())
    assert all(isinstance(v, str) for v in p["headers"].values())


def test_spec_validation_catches_a_bad_body(server):
    body, _, _ = build_body(make_message(), [make_recipient(1)])
    body["custom_args"] = {"n": 1}
    body["personalizations"][0]["to"][0]["email"] = "not-an-address"
    fields = {e["field"] for e in server.check(body)}
    assert "custom_args.n" in fields and "personalizations.0.to.0.email" in fields
    too_many = {"personalizations": [{"to": [{"email": f"a{i}@x.org"}, {"email": f"b{i}@x.org"}]} for i in range(501)]}
    assert any("recipients" in e["message"] for e in limit_errors(too_many))


def test_oversized_merge_data_rejects_only_that_recipient(server, transport):
    big = make_recipient(1, merge_data={"name": "x" * 6000})
    near = make_recipient(2, merge_data={"name": "é" * 2400})  # 9,600 bytes raw + escaped: still allowed
    results = transport.send_batch(make_message(), [make_recipient(0), big, near])
    assert [r.outcome for r in results] == [Outcome.QUEUED, Outcome.REJECTED, Outcome.QUEUED]
    assert "10,000-byte" in results[1].error
    assert len(server.bodies[0]["personalizations"]) == 2  # and the server's own limit check passed


def test_substitutions_match_the_merge_module():
    from newsletter.delivery.merge import substitutions

    values = {"name": 'Zoë <b> & "Co" \'x\'', "unsubscribe_url": "https://x.example/u?a=1&b=2", "unused": "z"}
    body, _, _ = build_body(make_message(), [make_recipient(1, merge_data=values)])
    sent = body["personalizations"][0]["substitutions"]
    expected = substitutions(values)
    assert sent == {k: expected[k]
                    for k in ("%%name%%", "%%name:raw%%", "%%unsubscribe_url%%", "%%unsubscribe_url:raw%%")}


def test_sandbox_mode_and_timeout(server, clock):
    with SendGridTransport(KEY, host=server.url, sandbox=True, timeout=7.5) as sg:
        assert sg._client.timeout == 7.5
        results = sg.send_batch(make_message(), [make_recipient(1)])
    assert server.bodies[0]["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert results[0].outcome is Outcome.QUEUED


def test_429_waits_for_the_reset_then_succeeds(server, transport, clock):
    server.fail_next(429, reset_in=0)
    # The reset the server sends is real time; the transport reads it against the fake clock.
    clock.now = __import__("time").time() - 20
    results = transport.send_batch(make_message(), make_recipients(3))
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 3
    assert server.requests == 2
    assert len(clock.sleeps) == 1 and 19 <= clock.sleeps[0] <= 22.5


def test_500_is_retried_with_backoff_then_succeeds(server, transport, clock):
    server.fail_next(500, times=2)
    results = transport.send_batch(make_message(), make_recipients(2))
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 2
    assert server.requests == 3 and len(clock.sleeps) == 2
    assert clock.sleeps[1] >= clock.sleeps[0] / 2 > 0


def test_500_until_attempts_run_out_is_failed_and_retryable(server, transport, clock):
    server.fail_next(503, times=5)
    results = transport.send_batch(make_message(), make_recipients(2))
    assert server.requests == 3
    assert all(r.outcome is Outcome.FAILED and r.retryable for r in results)


@pytest.mark.parametrize("status", [400, 403, 413])
def test_client_errors_are_permanent_and_not_retried(server, transport, clock, status):
    server.fail_next(status)
    results = transport.send_batch(make_message(), make_recipients(2))
    assert server.requests == 1 and clock.sleeps == []
    assert all(r.outcome is Outcome.REJECTED and not r.retryable for r in results)
    assert results[0].error.startswith(str(status))


def test_401_stops_with_a_hint_and_never_shows_the_key(server, clock, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    wrong = "SG.wrongwrongwrong.wrongwrongwrongwrong"
    policy = RetryPolicy(sleep=clock.sleep, clock=clock.time)
    with SendGridTransport(wrong, host=server.url, retry=policy) as sg:
        with pytest.raises(PermanentTransportError) as info:
            sg.send_batch(make_message(), make_recipients(2))
        assert wrong not in repr(sg)
    error = info.value
    assert isinstance(error, DeliveryError) and error.status == 401
    assert "SENDGRID_API_KEY" in error.hint
    assert server.requests == 1
    captured = capsys.readouterr()
    for text in (str(error), error.hint, repr(error), caplog.text, captured.out, captured.err):
        assert wrong not in text
    # Anything the library itself logs with the key in it comes out redacted.
    logging.getLogger("python_http_client.client").debug("HEADERS: {'Authorization': 'Bearer %s'}", wrong)
    assert "Bearer [redacted]" in caplog.text and wrong not in caplog.text


def test_connection_dropped_after_the_body_is_unknown(server, transport, clock):
    server.fail_next("drop")
    results = transport.send_batch(make_message(), make_recipients(2))
    assert server.requests == 1 and clock.sleeps == []
    assert all(r.outcome is Outcome.UNKNOWN and not r.retryable for r in results)


def test_timeout_after_sending_is_unknown(server, clock):
    server.fail_next("hang")
    with SendGridTransport(KEY, host=server.url, timeout=0.2, retry=RetryPolicy(sleep=clock.sleep)) as sg:
        results = sg.send_batch(make_message(), make_recipients(1))
    server.release()
    assert results[0].outcome is Outcome.UNKNOWN


def test_gateway_timeout_is_unknown(server, transport):
    server.fail_next(504)
    results = transport.send_batch(make_message(), make_recipients(1))
    assert results[0].outcome is Outcome.UNKNOWN and server.requests == 1


def test_refused_connection_is_retried_then_failed(clock):
    from smtp_server import free_port

    policy = RetryPolicy(max_attempts=2, sleep=clock.sleep, clock=clock.time)
    with SendGridTransport(KEY, host=f"http://127.0.0.1:{free_port()}", retry=policy) as sg:
        results = sg.send_batch(make_message(), make_recipients(2))
    assert len(clock.sleeps) == 1
    assert all(r.outcome is Outcome.FAILED and r.retryable for r in results)
    assert "before sending" in results[0].error


def test_too_many_recipients_for_one_batch(transport):
    with pytest.raises(ValueError):
        transport.send_batch(make_message(), make_recipients(1001))


def test_missing_key_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        SendGridTransport("")
    assert "SENDGRID_API_KEY" in info.value.hint


# Real-world addresses and names, and one bad recipient among many (issue 11).

def test_idn_domains_go_out_idna_encoded(server, transport):
    results = transport.send_batch(make_message(), [make_recipient(1, email="ann@Bücher.example")])
    assert results[0].outcome is Outcome.QUEUED
    assert server.bodies[0]["personalizations"][0]["to"][0]["email"] == "ann@xn--bcher-kva.example"
    assert server.delivered == ["ann@xn--bcher-kva.example"]


def test_a_non_ascii_local_part_fails_alone_before_the_request(server, transport):
    recipients = [make_recipient(0), make_recipient(1, email="renée.dupont@hotmail.com"), make_recipient(2)]
    results = transport.send_batch(make_message(), recipients)
    assert [r.outcome for r in results] == [Outcome.QUEUED, Outcome.REJECTED, Outcome.QUEUED]
    assert "SMTPUTF8" in results[1].error and "renée" not in results[1].error
    assert server.requests == 1 and server.delivered == ["reader0@example.org", "reader2@example.org"]


def test_the_stand_in_refuses_a_non_ascii_address_like_sendgrid(server):
    body, _, _ = build_body(make_message(), [make_recipient(0), make_recipient(1)])
    body["personalizations"][1]["to"][0]["email"] = "renée@bücher.example"
    assert server.check(body) == [{"field": "personalizations.1.to.0.email",
                                   "message": "Does not contain a valid address.",
                                   "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.personalizations.to"}]


@pytest.mark.parametrize("name", ["Dupont, Renée", "Renée; Dupont", '"Dupont, Renée"', "A,B;C"])
def test_names_with_commas_or_semicolons_are_never_dropped(server, transport, name):
    recipients = [make_recipient(1, name=name), make_recipient(2)]
    results = transport.send_batch(make_message(), recipients)
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 2
    assert server.dropped == []
    assert server.delivered == ["reader1@example.org", "reader2@example.org"]
    # The greeting still has the whole name: only SendGrid's to.name leaves it out.
    assert server.bodies[0]["personalizations"][0]["substitutions"]["%%name%%"] == "Reader 1"


def test_a_name_with_line_breaks_goes_out_clean(server, transport):
    transport.send_batch(make_message(), [make_recipient(1, name="Eve\r\nBcc: eve@evil.example\x00")])
    assert server.bodies[0]["personalizations"][0]["to"] == [
        {"email": "reader1@example.org", "name": "Eve Bcc: eve@evil.example"}]


def test_a_non_ascii_sender_name_goes_out_as_utf8_json(server, transport):
    from email.utils import formataddr

    sender = formataddr(("Clínica Saúde", "news@clinic.example"))  # as Settings.sender writes it: an RFC 2047 word
    transport.send_batch(make_message(from_email=sender, reply_to=formataddr(("Recepção", "desk@clinic.example"))),
                         [make_recipient(1)])
    body = server.bodies[0]
    assert body["from"] == {"email": "news@clinic.example", "name": "Clínica Saúde"}
    assert body["reply_to"] == {"email": "desk@clinic.example", "name": "Recepção"}


def test_a_non_ascii_sender_address_stops_with_a_hint(server, transport):
    with pytest.raises(PermanentTransportError) as info:
        transport.send_batch(make_message(from_email="Clinic <équipe@clinic.example>"), [make_recipient(1)])
    assert "NEWSLETTER_FROM" in info.value.hint and server.requests == 0


def test_one_refused_recipient_in_a_thousand_fails_alone_in_two_requests(clock):
    recipients = make_recipients(1000)
    with FakeSendGrid(api_key=KEY, refuse={"reader417@example.org"}) as server:
        with SendGridTransport(KEY, host=server.url, timeout=10,
                               retry=RetryPolicy(sleep=clock.sleep, clock=clock.time)) as sg:
            results = sg.send_batch(make_message(), recipients)
    assert [r.outcome for r in results].count(Outcome.QUEUED) == 999
    assert results[417].outcome is Outcome.REJECTED and not results[417].retryable
    assert results[417].error == "400 Does not contain a valid address. (to.0.email)"
    assert server.requests == 2
    assert sorted(server.delivered) == sorted(r.email for i, r in enumerate(recipients) if i != 417)


@pytest.mark.parametrize("bad", [[417], [0, 999], [3, 500, 501]])
def test_refused_recipients_are_found_by_halving_when_sendgrid_names_none(clock, bad):
    recipients = make_recipients(1000)
    refused = {recipients[i].email for i in bad}
    with FakeSendGrid(api_key=KEY, refuse=refused, anonymous_errors=True) as server:
        with SendGridTransport(KEY, host=server.url, timeout=10,
                               retry=RetryPolicy(sleep=clock.sleep, clock=clock.time)) as sg:
            results = sg.send_batch(make_message(), recipients)
    assert [i for i, r in enumerate(results) if r.outcome is Outcome.REJECTED] == bad
    assert all(r.outcome is Outcome.QUEUED for i, r in enumerate(results) if i not in bad)
    assert all("Does not contain a valid address." in results[i].error for i in bad)
    assert len(server.delivered) == len(set(server.delivered)) == 1000 - len(bad)
    # Two requests per halving of 1,000 (10 halvings) per culprit, plus the first and a little slack.
    assert server.requests <= 1 + 2 * 10 * len(bad) + 2
    assert clock.sleeps == []


def test_isolation_gives_up_within_its_budget(clock):
    """Every recipient refused, SendGrid naming none: bounded requests, everyone keeps the 400."""
    recipients = make_recipients(64)
    with FakeSendGrid(api_key=KEY, refuse={r.email for r in recipients}, anonymous_errors=True) as server:
        with SendGridTransport(KEY, host=server.url, timeout=10,
                               retry=RetryPolicy(sleep=clock.sleep, clock=clock.time)) as sg:
            results = sg.send_batch(make_message(), recipients)
    assert all(r.outcome is Outcome.REJECTED and r.error.startswith("400") for r in results)
    assert server.requests <= 1 + 2 * 6 * 4 + 2 and server.delivered == []


def test_a_line_break_merged_into_the_subject_gets_a_one_line_subject(server, transport):
    hostile = make_recipient(1, merge_data={"name": "Eve\r\nBcc: eve@evil.example"})
    transport.send_batch(make_message(), [make_recipient(0), hostile])
    plain_one, broken = server.bodies[0]["personalizations"]
    assert "subject" not in plain_one  # the shared subject and its substitution, as always
    assert broken["subject"] == "News for Eve Bcc: eve@evil.example"


def test_a_401_during_isolation_reports_what_was_already_accepted(clock):
    """The engine records ``exc.results``: parts already queued must not go back to pending."""
    recipients = make_recipients(8)
    with FakeSendGrid(api_key=KEY, refuse={recipients[7].email}, anonymous_errors=True) as server:
        with SendGridTransport(KEY, host=server.url, retry=RetryPolicy(sleep=clock.sleep, clock=clock.time)) as sg:
            server.fail_next(None)  # the first request is judged normally (a 400)...
            server.fail_next(None)  # ...and so is the first half (accepted)...
            server.fail_next(401)   # ...then the key is revoked
            with pytest.raises(PermanentTransportError) as info:
                sg.send_batch(make_message(), recipients)
    outcomes = [r.outcome for r in info.value.results]
    assert outcomes[:4] == [Outcome.QUEUED] * 4 and server.delivered == [r.email for r in recipients[:4]]
    assert all(r.outcome is Outcome.FAILED and r.retryable for r in info.value.results[4:])


# -- what the Mail Send client takes from the sendgrid library (fails loudly when the library changes) --

def test_the_sendgrid_library_still_provides_what_the_mail_send_client_uses():
    import io
    import urllib.error
    from email.message import Message as Headers

    import sendgrid
    from python_http_client.client import Response
    from python_http_client.exceptions import BadRequestsError, HTTPError, UnauthorizedError, handle_error

    assert sendgrid.__version__.split(".")[0] == "6", "the client is written for sendgrid 6.x: check its pieces again"
    library = sendgrid.SendGridAPIClient(api_key=KEY, host="https://api.example")
    headers = library.client.request_headers
    assert headers["Authorization"] == f"Bearer {KEY}" and headers["User-Agent"].startswith("sendgrid/")
    for status, kind in ((400, BadRequestsError), (401, UnauthorizedError)):
        answer = Headers()
        answer["X-RateLimit-Reset"] = "123"
        error = handle_error(urllib.error.HTTPError("https://api.example/v3/mail/send", status, "no", answer,
                                                    io.BytesIO(b'{"errors": []}')))
        assert isinstance(error, kind) and isinstance(error, HTTPError)
        assert (error.status_code, error.body, error.headers["X-RateLimit-Reset"]) == (status, b'{"errors": []}', "123")
    assert {"status_code", "body", "headers"} <= set(dir(Response))


def test_mail_send_client_posts_the_body_with_the_key_to_v3_mail_send(server):
    from newsletter.providers.sendgrid.client import MailSendClient

    client = MailSendClient(KEY, server.url + "/", timeout=5)
    body, _, _ = build_body(make_message(), [make_recipient(1)])
    response = client.post(body)
    assert response.status_code == 202 and client.url == server.url + "/v3/mail/send"
    assert server.bodies == [body]


def test_bodies_reach_the_server_as_built_whatever_the_strings(server):
    """The body is encoded with orjson (UTF-8, not ASCII escapes): the server gets the body as built,
    hostile strings included. A string orjson refuses (a lone surrogate, which a JSON attribute can
    hold) encodes that body as before: json with ASCII escapes."""
    import json

    from newsletter.providers.sendgrid.client import MailSendClient, encode

    client = MailSendClient(KEY, server.url, timeout=5)
    hostile = "Zoë \"Q\" <ß> 名前 \u202e\x00\r\n\t 😀 \\ %%name%% " + "é" * 2000
    body, _, _ = build_body(make_message(), [make_recipient(1, merge_data={"name": hostile}), make_recipient(2)])
    assert not encode(body).isascii() and json.loads(encode(body)) == body
    client.post(body)
    assert server.bodies == [body]
    assert server.bodies[0]["personalizations"][0]["substitutions"]["%%name:raw%%"] == hostile
    lone, _, _ = build_body(make_message(), [make_recipient(1, merge_data={"name": "broken \ud800 half"})])
    assert encode(lone) == json.dumps(lone, separators=(",", ":")).encode("ascii")
