"""``python -m runtime.serve``: runs runtime.serve.app."""

import sys

from runtime.serve.app import main

sys.exit(main())
