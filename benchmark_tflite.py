from qa_headpose.cli import benchmark_main

raise SystemExit(benchmark_main())
