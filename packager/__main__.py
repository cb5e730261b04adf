"""`python -m packager` runs the same command line as `packager`."""

from packager.cli import main

raise SystemExit(main())
