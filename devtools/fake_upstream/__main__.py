"""``python -m devtools.fake_upstream``: the DEMO upstream in the foreground (``server.main``).

The entry point lives in a package's ``__main__``; ``server`` has no ``__name__`` guard, so
it is never run as a second copy of itself beside the imported one.
"""

from devtools.fake_upstream.server import main

if __name__ == "__main__":
    main()
