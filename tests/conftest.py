"""The suite's layers, each runnable alone (``make test-unit`` and so on, see the README):

- ``tests/unit/``: no network at all (sockets are disabled there), seconds;
- ``tests/redis/``: a real Redis, and servers the test runs on 127.0.0.1 (the fake upstream);
- ``tests/integration/``: the stack's real processes (Celery worker, gunicorn gateways);
- ``tests/browser/``: Chromium driven by Playwright against the stack.

The fixtures are ``tests.helpers.fixtures`` (registered here, so every layer has them);
the helpers tests import are in ``tests.helpers``.
"""

pytest_plugins = ["tests.helpers.fixtures"]
