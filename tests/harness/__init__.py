"""The test harness: plain helpers the test modules and the conftest fixtures share.

- `kafka`: the shared broker (unique topics, consume back, sample native payloads);
- `stack`: private engines and free ports for destructive tests (`infra.stack`'s engines);
- `pipeline`: expected incidents of a simulated day, publishing, workers, index comparisons;
- `peers`: the Debian test peers (PostgreSQL, sipp, Chromium).
- `leaks`: what the suite leaves in the shared stack (the conftest's end-of-session check) and
  deleting a test namespace (`delete_namespace`, `delete_objects`, `delete_index_prefix`).

Processes, settings environments and isolated namespaces are `infra.processes`'; fixtures stay in
the conftest.py files and call these.
"""
