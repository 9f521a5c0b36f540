"""Self-tests of the benchmark service that need more than a unit test (``python -m
selftest``): the detection evaluation with planted regressions, the noise calibration,
the idle-machine check and the fault-injection run, with the tiny asv project and the
Slack-compatible server they share with the scheduler tests. It imports the service; the
service never imports it (``python -m scheduler evaluate|calibrate`` run its CLI)."""
