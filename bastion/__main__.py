"""Run the bastion CLI with `python -m bastion`."""

from bastion.cli import main

raise SystemExit(main())
