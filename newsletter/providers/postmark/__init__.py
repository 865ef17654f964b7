"""Postmark: the batch email transport (``transport``) and the webhook events (``events``).

Settings: ``POSTMARK_SERVER_TOKEN`` (environment only) and the ``[postmark]``
section of ``newsletter.toml`` (``host``, ``message_stream``,
``webhook_user``); the webhook password comes from
``NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD`` only. See ``docs/providers/postmark.md``.
"""
