"""Model architectures, one file per task: ``ef`` (video EF regressor)."""
