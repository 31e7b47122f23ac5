"""Task-agnostic measurement: data throughput, model size, latency (no task-specific code here)."""
