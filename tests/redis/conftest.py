"""Tests that need a real Redis (``redis_url``: the one on ``REDIS_URL``, started if none
answers; ``own_redis``: a server of the test's own, to kill and restart).

Network use is allowed here, on 127.0.0.1: besides Redis, a test may run servers in its own
process on loopback (the fake upstream, ``devtools.fake_upstream.FakeUpstream``; a
recording proxy) or start the fake upstream's command. What starts the stack's processes
(a Celery worker, a gunicorn gateway) belongs in ``tests/integration/``.
"""
