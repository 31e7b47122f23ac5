"""Task-agnostic measurement: data throughput, model size, latency (no EF-specific code here)."""
