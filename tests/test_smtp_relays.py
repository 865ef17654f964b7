"""Several SMTP relays ([[smtp.relays]]): real aiosmtpd servers, shared by weight, one failing; a recipient
is never sent twice because a relay failed. Cool-downs and rates run on injected clocks."""

from __future__ import annotations

import pytest
from newsletter.delivery.message import Message, Outcome, Recipient

from smtp_server import SmtpServer, free_port
from support.cli import populate


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def message() -> Message:
    return Message(subject="Hello", from_email="Clinic News <news@clinic.example>", html="<p>Hi</p>", text="Hi")


def recipients(count: int, start: int = 0) -> list[Recipient]:
    return [Recipient(email=f"reader{n}@example.org", message_id=f"m{n}@clinic.example")
            for n in range(start, start + count)]


def relays(*specs, failures=2, cooldown=300.0, clock=None):
    """A RelayTransport over ``(port, weight, options)`` specs."""
    from newsletter.delivery.relays import RelayTransport
    from newsletter.delivery.smtp import SmtpTransport

    built = [(f"127.0.0.1:{port}", SmtpTransport("127.0.0.1", port, tls="none", **{"connections": 2, "timeout": 5,
                                                                                  **options}), weight)
             for port, weight, options in specs]
    return RelayTransport(built, failures=failures, cooldown=cooldown, clock=clock or Clock())


def addresses(server: SmtpServer) -> list[str]:
    return [to for received in server.messages for to in received.rcpt_tos]


def test_relays_share_the_recipients_by_weight():
    with SmtpServer() as heavy, SmtpServer() as light:
        with relays((heavy.port, 3, {}), (light.port, 1, {})) as transport:
            results = []
            for batch in range(4):
                results += transport.send_batch(message(), recipients(10, batch * 10))
        assert [r.outcome for r in results] == [Outcome.SENT] * 40
        assert (len(addresses(heavy)), len(addresses(light))) == (30, 10)
        assert sorted(addresses(heavy) + addresses(light)) == sorted(r.email for r in recipients(40))


def test_a_failing_relay_is_skipped_for_its_cool_down_and_nobody_is_sent_twice():
    clock = Clock()
    dead = free_port()  # nothing listens there: connections are refused
    with SmtpServer() as good:
        transport = relays((good.port, 1, {}), (dead, 1, {}), failures=2, cooldown=300, clock=clock)
        with transport:
            results = []
            for batch in range(4):
                results += transport.send_batch(message(), recipients(5, batch * 5))
            assert [r.outcome for r in results] == [Outcome.SENT] * 20
            assert sorted(addresses(good)) == sorted(r.email for r in recipients(20))  # each exactly once
            down = transport.relays[1]
            assert down.down_until == pytest.approx(clock.now + 300)  # failed twice: skipped for 300 s
            failures_then = down.transport.connect_failures
            transport.send_batch(message(), recipients(5, 20))
            assert down.transport.connect_failures == failures_then  # skipped: not even tried
            clock.now += 301  # the cool-down is over: one more try (a batch), which fails, skips it again
            transport.send_batch(message(), recipients(5, 25))
            assert down.transport.connect_failures > failures_then
            assert down.down_until == pytest.approx(clock.now + 300)
        assert sorted(addresses(good)) == sorted(r.email for r in recipients(30))


def test_a_relay_refusing_our_login_counts_as_failing_and_the_other_sends():
    with SmtpServer(credentials=("news", "right")) as locked, SmtpServer() as good:
        transport = relays((locked.port, 1, {"username": "news", "password": "wrong"}), (good.port, 1, {}),
                           failures=1)
        with transport:
            results = transport.send_batch(message(), recipients(6))
        assert [r.outcome for r in results] == [Outcome.SENT] * 6
        assert sorted(addresses(good)) == sorted(r.email for r in recipients(6)) and locked.messages == []
        assert transport.relays[0].down_until > 0


def test_every_relay_refusing_our_login_stops_the_send():
    from newsletter.delivery.base import PermanentTransportError

    with SmtpServer(credentials=("news", "right")) as one, SmtpServer(credentials=("news", "right")) as two:
        wrong = {"username": "news", "password": "wrong"}
        with relays((one.port, 1, wrong), (two.port, 1, wrong), failures=1) as transport:
            with pytest.raises(PermanentTransportError, match="refused our login") as raised:
                transport.send_batch(message(), recipients(4))
        assert [r.outcome for r in raised.value.results] == [Outcome.FAILED] * 4
        assert all(r.retryable for r in raised.value.results)


def test_a_message_that_may_have_been_accepted_is_never_sent_through_another_relay():
    with SmtpServer() as flaky, SmtpServer() as good:
        flaky.handler.drop_after_data = 1  # the first message goes out whole, then the connection drops
        with relays((flaky.port, 1, {"connections": 1}), (good.port, 1, {})) as transport:
            results = transport.send_batch(message(), recipients(4))
        outcomes = {r.message_id: r.outcome for r in results}
        unknown = [m for m, outcome in outcomes.items() if outcome == Outcome.UNKNOWN]
        assert len(unknown) == 1 and sum(1 for o in outcomes.values() if o == Outcome.SENT) == 3
        lost = next(r.email for r in recipients(4) if r.message_id == unknown[0])
        assert lost not in addresses(good) + addresses(flaky)


def test_each_relay_keeps_its_own_rate_without_a_burst_after_idle():
    from newsletter.delivery.pacing import RatePacer

    clock = Clock()
    with SmtpServer() as server:
        with relays((server.port, 1, {"connections": 1})) as transport:
            pacer = RatePacer(10, clock=clock, sleep=clock.sleep)
            stamps = []

            def paced():
                pacer.take()
                stamps.append(clock.now)

            transport.relays[0].transport.pacer = paced
            transport.send_batch(message(), recipients(5))
            clock.now += 60  # idle: nothing is saved up
            transport.send_batch(message(), recipients(5, 5))
        gaps = [later - earlier for earlier, later in zip(stamps, stamps[1:], strict=False)]
        assert gaps[:4] == pytest.approx([0.1] * 4) and gaps[5:] == pytest.approx([0.1] * 4)


def test_a_campaign_through_relays_from_newsletter_toml(workspace, cli, tmp_path, monkeypatch):
    emails = populate(cli, tmp_path, 12)
    monkeypatch.setenv("RELAY_TWO_PASSWORD", "secret")
    with SmtpServer() as one, SmtpServer(credentials=("news", "secret")) as two:
        config = workspace / "newsletter.toml"
        config.write_text(config.read_text() + (
            f'\n[[smtp.relays]]\nhost = "127.0.0.1"\nport = {one.port}\nweight = 2\nrate = 0\npool_size = 2\n'
            f'\n[[smtp.relays]]\nhost = "127.0.0.1"\nport = {two.port}\nuser = "news"\n'
            f'password_env = "RELAY_TWO_PASSWORD"\nweight = 1\npool_size = 1\n'))
        result = cli("send", "articles/welcome.md", "--list", "readers", "--yes", "--transport", "smtp", "--json")
        assert result.exit_code == 0, result.stderr
        assert result.json()["counts"]["sent"] == 12
        assert (len(addresses(one)), len(addresses(two))) == (8, 4)
        assert sorted(addresses(one) + addresses(two)) == sorted(emails)


def test_a_relay_whose_password_variable_is_missing_is_a_one_line_error(workspace, cli):
    config = workspace / "newsletter.toml"
    config.write_text(config.read_text() + '\n[[smtp.relays]]\nhost = "relay.example.org"\n'
                                           'password_env = "NO_SUCH_RELAY_PASSWORD"\n')
    result = cli("campaigns", "list")
    assert result.exit_code == 1 and "NO_SUCH_RELAY_PASSWORD is not set" in result.stderr
    assert "Traceback" not in result.stderr
