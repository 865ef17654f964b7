"""The HTTP API under ``/api/`` of ``newsletter serve`` (FastAPI, mounted into the public Starlette app).

Served only while an API token exists (``newsletter tokens create``). See
``app.py`` for the parts and ``README.md`` ("HTTP API") for examples.
"""
