"""What the service keeps: the state database, the alert outbox, the baselines files."""
