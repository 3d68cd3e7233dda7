"""``python -m multilayercache``: see ``multilayercache.cli``."""

from .cli import main

raise SystemExit(main())
