"""Entry point of ``python -m tests.integration.services``."""

import contextlib
import sys

from tests.integration.services.cli import main

with contextlib.suppress(BrokenPipeError):
    sys.exit(main())
