from echolite.cli import main

raise SystemExit(main())
