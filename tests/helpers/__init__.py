"""What the tests share, in one package (tests import it; no test imports a conftest).

- ``support``: constants (ROOT, ARTIFACTS, UPSTREAM_KEY), waiting, reading SSE streams
  (``read_stream``, ``follow``, ``read_in_slices``), creating jobs; no process, no socket
  until called.
- ``stack``: the stack's processes (``start_worker``, ``start_gateway``,
  ``RestartableGateway``, ``Stack``) and their log files (``ProcessLogs``).
- ``fixtures``: the pytest fixtures, a plugin that the root ``tests/conftest.py`` registers.
"""
