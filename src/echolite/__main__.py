from echolite.cli import entry

raise SystemExit(entry())
