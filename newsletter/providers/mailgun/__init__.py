"""Mailgun: the Messages API transport (``transport``) and the signed JSON webhooks (``events``).

Settings: ``MAILGUN_API_KEY`` and ``MAILGUN_WEBHOOK_SIGNING_KEY``
(environment only) and the ``[mailgun]`` section of ``newsletter.toml``
(``domain``, ``region``, ``host``, ``test_mode``; see ``newsletter.transports``
for the environment overrides). ``docs/providers/mailgun.md`` is the guide.
"""
