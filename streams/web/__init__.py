"""Search API and page (jurisdiction-scoped, audit-logged). See `streams.web.server.make_app`."""
