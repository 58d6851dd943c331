"""The durable run queue: FIFO in SQLite, N worker processes, estimates."""
