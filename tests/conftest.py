"""The fixtures are ``tests.helpers.fixtures``, registered here so that every test has them;
the helpers tests import are in ``tests.helpers``."""

pytest_plugins = ["tests.helpers.fixtures"]
