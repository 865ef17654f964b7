"""Properties of webhook events and signatures over hostile data: what a receiver verifies and reads back is
what we hold, whatever the name or address (CR/LF, control characters, IDN, quotes, huge)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from newsletter.audience import manage
from newsletter.delivery import webhooks as wire
from newsletter.errors import InputError
from newsletter.store import webhooks as hooks
from newsletter.store.db import Store
from newsletter.store.models import Subscriber
from sqlalchemy import delete, select
from standardwebhooks.webhooks import Webhook

from support.hostile import DOMAINS, LOCALS, NAMES


@given(body=st.binary(max_size=2000).map(lambda b: b.decode("utf-8", "replace").encode()),
       event_id=st.from_regex(r"evt_[0-9a-f]{32}", fullmatch=True))
def test_standardwebhooks_verifies_every_signature_we_make(body, event_id):
    import time

    secret = wire.new_secret()
    headers = wire.headers(secret, event_id, int(time.time()), body)
    assert Webhook(secret).verify(body, headers, json_parse=False) is None  # no exception: verified
    assert headers["webhook-signature"].startswith("v1,")


def test_an_event_carries_what_we_hold_about_a_hostile_subscriber(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'n.db'}")
    with store.session() as session:
        hooks.add_endpoint(session, "https://crm.example.org/h", wire.new_secret(), ["subscriber.created"])
    accepted = []

    @hsettings(max_examples=60, deadline=None)
    @given(local=LOCALS, domain=DOMAINS, name=NAMES)
    def check(local, domain, name):
        with store.session() as session:  # each example starts from no subscriber and no event
            session.execute(delete(Subscriber))
            session.execute(delete(hooks.deliveries_t))
            session.execute(delete(hooks.events_t))
        try:
            manage.add_subscriber(store, f"{local}@{domain}", name=name, list_name="readers")
        except InputError:
            return  # refused at the door: nothing was written
        held = manage.describe(store, f"{local}@{domain}")
        accepted.append(held["email"])
        with store.session() as session:
            [body] = session.scalars(select(hooks.WebhookEvent.body)).all()
        data = json.loads(body)["data"]
        assert (data["email"], data["name"]) == (held["email"], held["name"])
        assert "\r" not in data["name"] and "\n" not in data["name"]
        assert "\n" not in body  # one line of JSON: control characters escaped

    try:
        check()
    finally:
        store.close()
    assert len(accepted) >= 10  # the property was exercised, not refused at the door every time


URLS = st.one_of(
    st.text(max_size=60),
    st.builds("{}://{}{}{}".format, st.sampled_from(["http", "https", "HTTPS", "ftp", "file", "javascript"]),
              DOMAINS, st.sampled_from(["", ":8443", ":0", ":99999", ":x"]),
              st.text(max_size=30).map(lambda t: "/" + t)),
)


@given(url=URLS)
def test_only_http_urls_pass_the_door(url):
    try:
        checked = wire.check_url(url)
    except InputError:
        return
    assert checked.lower().startswith(("http://", "https://")) and not any(ord(c) < 33 for c in checked)
    assert checked.isascii() and wire.check_url(checked) == checked  # what is stored goes on the wire as it is
