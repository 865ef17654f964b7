"""Amazon SES (API v2, boto3): the transport (``transport.py``) and the SNS event webhook (``events.py``)."""
