"""`python -m node ...`: the node's command line."""

from node.cli import main

raise SystemExit(main())
