"""Search: the per-layer float fallback (and, in echolite.search, the budgeted model search)."""
