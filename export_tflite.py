from qa_headpose.cli import export_main

raise SystemExit(export_main())
