"""What this machine offers the runtime: its CPU's instruction sets and the threads a process
may use (affinity, cgroup quota, deployment profiles)."""
