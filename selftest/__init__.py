"""Self-tests of the benchmark service that need more than a unit test: the fault-injection
run (``python -m selftest.faults``), with the tiny asv project and the Slack-compatible
server it shares with the scheduler tests. It imports the service; the service never
imports it."""
