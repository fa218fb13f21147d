"""Elasticsearch sink for incidents: pure document/template builders plus the async bulk sink.

`documents` and `templates` are pure (no elasticsearch import); `sink` and `admin` do the I/O,
through the client `client.async_client` makes.
"""
