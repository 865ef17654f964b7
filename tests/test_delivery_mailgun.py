"""The Mailgun transport, through the official SDK, against a local server speaking the Messages API."""

from __future__ import annotations

import json
import logging

import pytest
from newsletter.delivery.base import PermanentTransportError
from newsletter.delivery.message import Outcome
from newsletter.delivery.retry import RetryPolicy
from newsletter.errors import ConfigError, DeliveryError
from newsletter.providers.mailgun.body import build_form, shared_parts
from newsletter.providers.mailgun.transport import MailgunTransport

from fake_mailgun import FakeMailgun, check, split_mailboxes
from support.cli import populate
from support.delivery import make_message, make_recipient, make_recipients

KEY = "key-0123456789abcdef0123456789abcdef"
DOMAIN = "mg.clinic.example"


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
    with FakeMailgun(api_key=KEY, domain=DOMAIN) as fake:
        yield fake


@pytest.fixture
def clock():
    return FakeClock()


def transport_for(server, clock, **options) -> MailgunTransport:
    policy = RetryPolicy(max_attempts=3, sleep=clock.sleep, clock=clock.time)
    return MailgunTransport(options.pop("key", KEY), options.pop("domain", DOMAIN), host=server.url,
                            timeout=options.pop("timeout", 5), retry=policy, **options)


@pytest.fixture
def transport(server, clock):
    with transport_for(server, clock) as mg:
        yield mg


def by_address(server) -> dict[str, dict]:
    return {m["to"]: m for m in server.messages}


def test_one_request_carries_a_thousand_recipients_each_personalised(server, transport):
    recipients = make_recipients(1000)
    results = transport.send_batch(make_message(), recipients)
    assert server.requests == 1 and server.content_types == ["multipart/form-data"]
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 1000
    assert [r.message_id for r in results] == [r.message_id for r in recipients]
    assert len({r.provider_id for r in results}) == 1 and results[0].provider_id.endswith(f"@{DOMAIN}")
    assert server.delivered == [r.email for r in recipients]
    got = by_address(server)["reader417@example.org"]
    assert got["subject"] == "News for Reader 417"
    assert got["text"].startswith("Dear Reader 417,") and "/unsubscribe/token417" in got["text"]
    assert "Dear Reader 417," in got["html"] and "%recipient" not in got["html"] + got["text"] + got["subject"]
    assert got["headers"] == {"List-Unsubscribe": "<https://news.clinic.example/unsubscribe/token417>",
                              "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                              "Message-Id": "<c7.s417.abc@clinic.example>"}
    assert got["variables"] == {"campaign_id": "7", "subscriber_id": "417", "message_id": "c7.s417.abc@clinic.example"}
    assert got["tags"] == ["newsletter", "campaign-7"] and got["testmode"] is None


def test_merge_values_are_escaped_in_html_and_raw_in_text(server, transport):
    recipient = make_recipient(3, name='Ann "A" <B> & Co', merge_data={"name": 'Ann <b>&"', "unsubscribe_url": ""})
    transport.send_batch(make_message(), [recipient])
    (got,) = server.messages
    assert "Dear Ann &lt;b&gt;&amp;&quot;," in got["html"]
    assert got["text"].startswith('Dear Ann <b>&",') and got["subject"] == 'News for Ann <b>&"'
    assert got["name"] == '"Ann \\"A\\" <B> & Co"'  # quoted as formataddr writes it


def test_a_line_break_merged_into_the_subject_stays_on_one_line(server, transport):
    transport.send_batch(make_message(), [make_recipient(1, merge_data={"name": "Eve\r\nBcc: eve@evil.example"})])
    (got,) = server.messages
    assert got["subject"] == "News for Eve Bcc: eve@evil.example"
    assert got["text"].startswith("Dear Eve\r\nBcc: eve@evil.example,")  # the body keeps what it was given


def test_a_recipient_without_a_field_gets_it_empty_never_the_raw_variable(server, transport):
    transport.send_batch(make_message(), [make_recipient(1, merge_data={}, headers={}, metadata={})])
    (got,) = server.messages
    assert got["subject"] == "News for " and "%recipient" not in got["html"] + got["text"]
    assert got["variables"]["message_id"] == "c7.s1.abc@clinic.example"


def test_the_form_passes_the_stand_ins_checks_and_names_no_secret():
    fields, included, results = build_form(shared_parts(make_message()), make_recipients(3))
    assert included == [0, 1, 2] and results == [None] * 3
    assert check(fields) == (None, [(f"Reader {i}", f"reader{i}@example.org") for i in range(3)],
                             json.loads(dict(fields)["recipient-variables"]))
    assert [name for name, _ in fields].count("to") == 1
    assert KEY not in repr(fields)


def test_test_mode_and_timeout(server, clock):
    with transport_for(server, clock, test_mode=True, timeout=7.5) as mg:
        assert mg._client._client.timeout == (7.5, 7.5)
        results = mg.send_batch(make_message(), [make_recipient(1)])
    assert results[0].outcome is Outcome.QUEUED and server.messages[0]["testmode"] == "yes"


def test_the_stand_in_checks_what_mailgun_checks():
    base = [("from", "News <news@clinic.example>"), ("text", "x"), ("to", "a@example.org")]
    assert check(base[:2])[0] == "to parameter is missing"
    assert check(base[1:])[0] == "from parameter is missing"
    assert check([base[0], base[2]])[0] == "Need at least one of 'text' or 'html' parameters specified"
    many = ", ".join(f"r{i}@example.org" for i in range(1001))
    assert check(base[:2] + [("to", many)])[0] == "Too many recipients; max is 1000"
    not_json = "recipient-variables parameter is not a valid JSON"
    assert check(base + [("recipient-variables", "{not json")])[0] == not_json
    assert check(base + [("v:big", "x" * 17000)])[0].startswith("Send options")
    assert check(base[:2] + [("to", "renée@example.org")])[0] == \
        "to parameter is not a valid address. please check documentation"
    assert split_mailboxes('"Dupont, Renée" <a@x.org>, b@y.org') == [('"Dupont, Renée"', "a@x.org"), ("", "b@y.org")]


def test_429_waits_for_retry_after_then_succeeds(server, transport, clock):
    server.fail_next(429, delay=20)
    results = transport.send_batch(make_message(), make_recipients(3))
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 3
    assert server.requests == 2 and server.delivered == [f"reader{i}@example.org" for i in range(3)]
    assert len(clock.sleeps) == 1 and 20 <= clock.sleeps[0] <= 21


def test_500_is_retried_with_backoff_then_succeeds(server, transport, clock):
    server.fail_next(500, times=2)
    results = transport.send_batch(make_message(), make_recipients(2))
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 2
    assert server.requests == 3 and len(clock.sleeps) == 2 and len(server.delivered) == 2


def test_500_until_attempts_run_out_is_failed_and_retryable(server, transport):
    server.fail_next(503, times=5)
    results = transport.send_batch(make_message(), make_recipients(2))
    assert server.requests == 3 and server.delivered == []
    assert all(r.outcome is Outcome.FAILED and r.retryable for r in results)


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_are_unknown_and_not_retried(server, transport, status):
    server.fail_next(status)
    results = transport.send_batch(make_message(), make_recipients(1))
    assert results[0].outcome is Outcome.UNKNOWN and server.requests == 1


def test_a_400_that_blames_no_address_is_permanent_and_not_retried(server, transport, clock):
    server.fail_next(400)
    results = transport.send_batch(make_message(), make_recipients(2))
    assert server.requests == 1 and clock.sleeps == []
    assert all(r.outcome is Outcome.REJECTED and not r.retryable and r.error == "400 Bad Request" for r in results)


def test_401_stops_with_a_hint_and_never_shows_the_key(server, clock, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    wrong = "key-wrongwrongwrongwrongwrongwrong00"
    with transport_for(server, clock, key=wrong) as mg:
        with pytest.raises(PermanentTransportError) as info:
            mg.send_batch(make_message(), make_recipients(2))
        assert wrong not in repr(mg)
    error = info.value
    assert isinstance(error, DeliveryError) and error.status == 401 and "MAILGUN_API_KEY" in error.hint
    assert server.requests == 1
    captured = capsys.readouterr()
    for text in (str(error), error.hint, repr(error), caplog.text, captured.out, captured.err):
        assert wrong not in text


def test_an_unknown_domain_stops_with_a_region_hint(server, clock):
    with transport_for(server, clock, domain="other.example") as mg:
        with pytest.raises(PermanentTransportError) as info:
            mg.send_batch(make_message(), make_recipients(1))
    assert info.value.status == 404 and "NEWSLETTER_MAILGUN_REGION" in info.value.hint


def test_connection_dropped_after_the_body_is_unknown(server, transport, clock):
    server.fail_next("drop")
    results = transport.send_batch(make_message(), make_recipients(2))
    assert server.requests == 1 and clock.sleeps == []
    assert all(r.outcome is Outcome.UNKNOWN and not r.retryable for r in results)


def test_timeout_after_sending_is_unknown(server, clock):
    server.fail_next("hang")
    with transport_for(server, clock, timeout=0.3) as mg:
        results = mg.send_batch(make_message(), make_recipients(1))
    server.release()
    assert results[0].outcome is Outcome.UNKNOWN and server.requests == 1


def test_a_slow_answer_within_the_timeout_is_accepted(server, clock):
    server.fail_next("slow", delay=0.2)
    with transport_for(server, clock, timeout=5) as mg:
        results = mg.send_batch(make_message(), make_recipients(2))
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 2 and server.requests == 1


def test_refused_connection_is_retried_then_failed(clock):
    from smtp_server import free_port

    policy = RetryPolicy(max_attempts=2, sleep=clock.sleep, clock=clock.time)
    with MailgunTransport(KEY, DOMAIN, host=f"http://127.0.0.1:{free_port()}", retry=policy) as mg:
        results = mg.send_batch(make_message(), make_recipients(2))
    assert len(clock.sleeps) == 1
    assert all(r.outcome is Outcome.FAILED and r.retryable for r in results)
    assert "before sending" in results[0].error


def test_too_many_recipients_for_one_batch(transport):
    with pytest.raises(ValueError):
        transport.send_batch(make_message(), make_recipients(1001))


@pytest.mark.parametrize(("args", "needle"), [(("", DOMAIN), "MAILGUN_API_KEY"), ((KEY, ""), "domain"),
                                              ((KEY, "mg.example/../x"), "domain")])
def test_missing_or_bad_settings_are_config_errors(args, needle):
    with pytest.raises(ConfigError) as info:
        MailgunTransport(*args)
    assert needle in info.value.hint


def test_plain_http_to_a_remote_host_is_refused_by_the_sdk():
    with pytest.raises(ConfigError) as info:
        MailgunTransport(KEY, DOMAIN, host="http://mailgun.example.org").open()
    assert "https://" in info.value.hint


# -- hostile addresses and names, and one bad recipient among many ------------------------------------

def test_idn_domains_go_out_idna_encoded(server, transport):
    results = transport.send_batch(make_message(), [make_recipient(1, email="ann@Bücher.example")])
    assert results[0].outcome is Outcome.QUEUED and server.delivered == ["ann@xn--bcher-kva.example"]
    assert server.messages[0]["subject"] == "News for Reader 1"  # its recipient-variables found by that address


def test_a_non_ascii_local_part_fails_alone_before_the_request(server, transport):
    recipients = [make_recipient(0), make_recipient(1, email="renée.dupont@hotmail.com"), make_recipient(2)]
    results = transport.send_batch(make_message(), recipients)
    assert [r.outcome for r in results] == [Outcome.QUEUED, Outcome.REJECTED, Outcome.QUEUED]
    assert "non-ASCII" in results[1].error and "renée" not in results[1].error
    assert server.requests == 1 and server.delivered == ["reader0@example.org", "reader2@example.org"]


@pytest.mark.parametrize("name", ["Dupont, Renée", "Renée; Dupont", '"Dupont, Renée"', "A,B;C", "Zoë <z@x>"])
def test_names_with_commas_quotes_and_accents_reach_the_right_address(server, transport, name):
    results = transport.send_batch(make_message(), [make_recipient(1, name=name), make_recipient(2)])
    assert [r.outcome for r in results] == [Outcome.QUEUED] * 2
    assert server.delivered == ["reader1@example.org", "reader2@example.org"]
    from email.policy import default

    got = server.messages[0]
    (mailbox,) = default.header_factory("To", f"{got['name']} <{got['to']}>").addresses
    assert (mailbox.display_name, mailbox.addr_spec) == (name, "reader1@example.org")


def test_a_name_with_line_breaks_goes_out_clean(server, transport):
    transport.send_batch(make_message(), [make_recipient(1, name="Eve\r\nBcc: eve@evil.example\x00")])
    assert server.messages[0]["name"] == '"Eve Bcc: eve@evil.example"' and server.delivered == ["reader1@example.org"]


def test_a_quoted_local_part_keeps_its_recipient_variables(server, transport):
    results = transport.send_batch(make_message(), [make_recipient(1, email='"a,b <c>"@example.org')])
    assert results[0].outcome is Outcome.QUEUED
    assert server.messages[0]["to"] == '"a,b <c>"@example.org' and server.messages[0]["subject"] == "News for Reader 1"


def test_a_non_ascii_sender_name_is_encoded_and_a_non_ascii_sender_address_stops(server, transport):
    from email.utils import formataddr

    transport.send_batch(make_message(from_email=formataddr(("Clínica Saúde", "news@clinic.example"))),
                         [make_recipient(1)])
    from email.policy import default

    (sender,) = default.header_factory("From", server.messages[0]["from"]).addresses
    assert server.messages[0]["from"].isascii() and sender.display_name == "Clínica Saúde"
    with pytest.raises(PermanentTransportError) as info:
        transport.send_batch(make_message(from_email="Clinic <équipe@clinic.example>"), [make_recipient(1)])
    assert "NEWSLETTER_FROM" in info.value.hint and server.requests == 1


def test_the_same_address_twice_goes_once_and_the_copy_is_retryable(server, transport):
    results = transport.send_batch(make_message(), [make_recipient(1), make_recipient(1, message_id="other@x")])
    assert [r.outcome for r in results] == [Outcome.QUEUED, Outcome.FAILED] and results[1].retryable
    assert server.delivered == ["reader1@example.org"]


@pytest.mark.parametrize("bad", [[417], [0, 999], [3, 500, 501]])
def test_refused_addresses_are_found_by_halving_and_the_rest_sent_once(clock, bad):
    recipients = make_recipients(1000)
    with FakeMailgun(api_key=KEY, domain=DOMAIN, refuse={recipients[i].email for i in bad}) as server:
        with transport_for(server, clock) as mg:
            results = mg.send_batch(make_message(), recipients)
    assert [i for i, r in enumerate(results) if r.outcome is Outcome.REJECTED] == bad
    assert all(r.outcome is Outcome.QUEUED for i, r in enumerate(results) if i not in bad)
    assert all("not a valid address" in results[i].error and not results[i].retryable for i in bad)
    assert len(server.delivered) == len(set(server.delivered)) == 1000 - len(bad)
    assert server.requests <= 1 + 2 * 10 * len(bad) + 2 and clock.sleeps == []


def test_isolation_gives_up_within_its_budget(clock):
    recipients = make_recipients(64)
    with FakeMailgun(api_key=KEY, domain=DOMAIN, refuse={r.email for r in recipients}) as server:
        with transport_for(server, clock) as mg:
            results = mg.send_batch(make_message(), recipients)
    assert all(r.outcome is Outcome.REJECTED and r.error.startswith("400") for r in results)
    assert server.requests <= 1 + 2 * 6 * 4 + 2 and server.delivered == []


def test_a_401_during_isolation_reports_what_was_already_accepted(clock):
    recipients = make_recipients(8)
    with FakeMailgun(api_key=KEY, domain=DOMAIN, refuse={recipients[7].email}) as server:
        with transport_for(server, clock) as mg:
            server.fail_next(None, times=2)  # the whole request (a 400) and the first half (accepted)...
            server.fail_next(401)             # ...then the key is revoked
            with pytest.raises(PermanentTransportError) as info:
                mg.send_batch(make_message(), recipients)
    outcomes = [r.outcome for r in info.value.results]
    assert outcomes[:4] == [Outcome.QUEUED] * 4 and server.delivered == [r.email for r in recipients[:4]]
    assert all(r.outcome is Outcome.FAILED and r.retryable for r in info.value.results[4:])


# -- end to end: `newsletter send --transport mailgun` --------------------------------------------------

@pytest.fixture
def mailgun_env(monkeypatch, server):
    from newsletter.delivery import retry

    monkeypatch.setenv("MAILGUN_API_KEY", KEY)
    monkeypatch.setenv("NEWSLETTER_MAILGUN_DOMAIN", DOMAIN)
    monkeypatch.setenv("NEWSLETTER_MAILGUN_HOST", server.url)
    waits: list[float] = []
    monkeypatch.setattr(retry, "pause", waits.append)  # backoff takes no real time here
    return waits


def test_send_through_mailgun_reaches_each_recipient_exactly_once(workspace, cli, tmp_path, server, mailgun_env):
    emails = populate(cli, tmp_path, 2500)
    server.fail_next(429, delay=1)
    server.fail_next(500)
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "mailgun", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["sent"] == 2500 and report["status"] == "sent"
    assert sorted(server.delivered) == sorted(emails) and len(server.forms) == 3  # 1,000 + 1,000 + 500
    assert len(mailgun_env) == 2 and all(wait > 0 for wait in mailgun_env)
    got = by_address(server)["reader7@example.org"]
    assert got["headers"]["List-Unsubscribe"].startswith("<https://news.clinic.example/unsubscribe/")
    assert got["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert got["headers"]["Message-Id"] == f"<{got['variables']['message_id']}>"
    assert got["variables"]["campaign_id"] == str(report["campaign_id"])
    assert "%recipient" not in got["html"] + got["text"] + got["subject"]
    shown = cli("campaigns", "show", str(report["campaign_id"]), "--json").json()
    assert shown["counts"]["sent"] == 2500 and shown["counts"]["pending"] == 0


def test_a_bad_key_pauses_the_send_with_a_hint_and_resume_finishes(workspace, cli, tmp_path, server, mailgun_env,
                                                                   monkeypatch):
    populate(cli, tmp_path, 1200)
    monkeypatch.setenv("MAILGUN_API_KEY", "key-wrong-and-must-not-leak")
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "mailgun")
    said = " ".join((result.stderr + result.stdout).split())
    assert result.exit_code == 1 and "MAILGUN_API_KEY" in said and "Traceback" not in said
    assert "must-not-leak" not in said and server.delivered == []
    shown = cli("campaigns", "show", "1", "--json").json()
    assert shown["status"] == "paused" and shown["counts"]["pending"] == 1200
    assert shown["pause_reason"].startswith("the relay refused the login")
    monkeypatch.setenv("MAILGUN_API_KEY", KEY)
    assert cli("campaigns", "resume", "1", "--json").json()["status"] == "sent"
    assert len(server.delivered) == len(set(server.delivered)) == 1200


# -- what the client takes from the mailgun SDK (fails loudly when the SDK changes) ---------------------

def test_the_mailgun_sdk_still_provides_what_the_client_uses(server):
    import mailgun
    import requests
    from mailgun.client import Client
    from mailgun.config import RetryPolicy as SdkRetry
    from mailgun.handlers.error_handler import ApiError

    assert mailgun.__version__.split(".")[0] == "1", "the client is written for mailgun 1.x: check its pieces again"
    client = Client(auth=("api", KEY), api_url=server.url, timeout=(1.0, 5.0), retry_policy=SdkRetry(max_retries=0))
    try:
        response = client.messages.create(data=[("from", "a@clinic.example"), ("to", "b@example.org"), ("text", "x")],
                                          files=[("recipient-variables", (None, b"{}"))], domain=DOMAIN)
        assert isinstance(response, requests.Response) and response.status_code == 200
        assert response.json()["message"] == "Queued. Thank you."
        assert server.content_types == ["multipart/form-data"] and server.delivered == ["b@example.org"]
    finally:
        client.close()
    from smtp_server import free_port

    refused = Client(auth=("api", KEY), api_url=f"http://127.0.0.1:{free_port()}", timeout=(1.0, 1.0),
                     retry_policy=SdkRetry(max_retries=0))
    try:
        with pytest.raises(ApiError) as info:
            refused.messages.create(data=[("to", "b@example.org")], domain=DOMAIN)
        assert isinstance(info.value.__cause__, requests.ConnectionError)
    finally:
        refused.close()


# -- settings -------------------------------------------------------------------------------------------

def test_settings_from_the_mailgun_section_and_the_environment(plain_workspace, monkeypatch):
    from newsletter.config import load_settings, mail_leaves_machine

    config = plain_workspace / "newsletter.toml"
    config.write_text(config.read_text().replace('region = "us"', 'region = "eu"\ndomain = "MG.Clinic.example"'))
    monkeypatch.setenv("MAILGUN_API_KEY", KEY)
    monkeypatch.setenv("MAILGUN_WEBHOOK_SIGNING_KEY", "whsec-secret-value")
    settings = load_settings()
    assert (settings.mailgun_domain, settings.mailgun_region) == ("mg.clinic.example", "eu")
    assert settings.mailgun_base_url == "https://api.eu.mailgun.net" and mail_leaves_machine(settings, "mailgun")
    assert KEY not in repr(settings) and "whsec-secret-value" not in repr(settings)
    transport = MailgunTransport.from_settings(settings)
    assert transport.host == "https://api.eu.mailgun.net" and transport.domain == "mg.clinic.example"
    monkeypatch.setenv("NEWSLETTER_MAILGUN_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("NEWSLETTER_MAILGUN_REGION", "us")
    local = load_settings()
    assert local.mailgun_base_url == "http://127.0.0.1:9" and not mail_leaves_machine(local, "mailgun")


def test_a_bad_region_is_a_one_line_config_error(plain_workspace, monkeypatch):
    from newsletter.config import load_settings

    monkeypatch.setenv("NEWSLETTER_MAILGUN_REGION", "asia")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "NEWSLETTER_MAILGUN_REGION" in info.value.message and "us, eu" in info.value.message


def test_send_without_the_api_key_says_which_variable_to_set(workspace, cli, tmp_path):
    populate(cli, tmp_path, 2)
    result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "mailgun")
    assert result.exit_code == 1 and "MAILGUN_API_KEY" in result.stderr and "Traceback" not in result.stderr


def test_scale_out_workers_build_the_transport_with_the_shared_429_pause(plain_workspace, monkeypatch):
    """Registered with shared_throttle: a worker's Mailgun transport takes the policy that pauses every worker."""
    from newsletter.config import load_settings
    from newsletter.distributed.chunks import WorkerContext
    from newsletter.distributed.limits import SharedPausePolicy

    monkeypatch.setenv("MAILGUN_API_KEY", KEY)
    monkeypatch.setenv("NEWSLETTER_MAILGUN_DOMAIN", DOMAIN)
    transport = WorkerContext(None, load_settings()).transport("mailgun")
    assert isinstance(transport, MailgunTransport) and isinstance(transport.retry, SharedPausePolicy)
