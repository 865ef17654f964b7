"""Email providers: one package per provider (the registry of every transport is newsletter.transports).

A *provider* is a service that sends our mail and reports back what
happened to it (SendGrid). Its package holds both halves:

- ``transport.py``: its :class:`~newsletter.delivery.base.Transport`
  (how a batch is sent, what each answer means);
- ``events.py``: its event source (:class:`newsletter.providers.base.EventSource`):
  ``verify(headers, raw_body)`` checks a webhook request is genuine and
  fresh (raises :class:`~newsletter.providers.base.Refused`), and
  ``parse(raw_body)`` turns the body into provider-neutral
  :class:`~newsletter.tracking.TrackingEvent` objects. Storing and applying
  them (deduplicate, match to the ledger, suppress, unsubscribe) is the
  provider-neutral pipeline's job (``newsletter.events.pipeline``), and HTTP
  is ``newsletter.web.webhook``'s: ``POST /webhooks/<name>``.

Simple transports that report nothing back (SMTP, file, console, memory)
stay in ``newsletter.delivery``.

Adding a provider:

1. add a package ``newsletter/providers/<name>/`` with ``transport.py``
   (a ``Transport`` subclass with ``name = "<name>"`` and a
   ``from_settings(settings, **overrides)`` class method) and, when the
   provider posts events, ``events.py`` (an ``EventSource`` with
   ``from_settings(settings, clock)``);
2. register it: one :class:`~newsletter.transports.Provider` entry in
   ``newsletter/transports.py``, naming both classes, its
   ``newsletter.toml`` section and the environment variables that override
   its keys (``config`` reads them from there; add the values your classes
   read to ``Settings``);
3. add its tests (``tests/test_delivery_<name>.py``, and a webhook test).

Everything that lists transports derives the list from the registry:
configuration validation, ``newsletter init/send/schedule --transport``,
``get_transport``, the webhook route, and the engine's choice of
transports several sender processes may share (``process_safe_names()``).
"""
