"""`python -m saga_service ...` is `saga-service ...`, for where the script is not on PATH."""

import sys

from saga_service.entrypoints.cli import main

sys.exit(main())
