from cemasim.cli import main

raise SystemExit(main())
