"""SendGrid: the v3 Mail Send transport (``transport``) and the signed Event Webhook (``events``).

Settings: ``SENDGRID_API_KEY`` (environment only) and the ``[sendgrid]``
section of ``newsletter.toml`` (``host``, ``sandbox``, ``webhook_key``;
see ``newsletter.transports`` for the environment overrides).
"""
