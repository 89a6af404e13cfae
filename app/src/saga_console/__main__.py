"""`python -m saga_console`, the same as the `saga-console` script."""

import sys

from saga_console.cli import main

sys.exit(main())
