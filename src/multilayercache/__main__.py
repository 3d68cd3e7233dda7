"""``python -m multilayercache ...``: see ``multilayercache.tools.cli``."""

from .tools.cli import main

raise SystemExit(main())
