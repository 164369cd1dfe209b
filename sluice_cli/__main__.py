"""``python -m sluice_cli chat …`` (see ``sluice_cli.chat``)."""

import sys

from sluice_cli.chat import main

sys.exit(main())
