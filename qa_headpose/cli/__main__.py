"""``python -m qa_headpose.cli``."""

from qa_headpose.cli.main import main

raise SystemExit(main())
