from rva.cli import main

raise SystemExit(main())
