"""`python -m hubgen ...` (and `accelerate launch -m hubgen train ...`)."""

import sys

from .cli import main

sys.exit(main())
