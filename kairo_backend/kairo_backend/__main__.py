from kairo_backend.cli import main

raise SystemExit(main())
