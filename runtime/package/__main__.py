"""``python -m runtime.package``: runs runtime.package.build."""

import sys

from runtime.package.build import main

sys.exit(main())
