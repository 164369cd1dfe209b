"""Integration tests: the stack's real processes (a Celery worker with the gevent pool,
gunicorn gateways as the Procfile runs them) against the real Redis and the fake upstream,
through ``tests.helpers.stack`` and the fixtures of ``tests.helpers.fixtures``. The slow
layer: about eight minutes on two cores, a minute of it the chaos soak."""
