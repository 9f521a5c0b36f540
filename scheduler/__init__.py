"""Benchmark-regression scheduler: an APScheduler daemon that runs the asv suite on new
commits of a watched repository, publishes the asv site, judges the results and alerts.

One module per concern: config, state, lock, gitrepo, asvrun (all asv knowledge),
results, judge, baselines, outbox, notify/ (console, webhook, slackbot), messages, plot,
site, service (the work), jobs (APScheduler job functions), daemon, cli.
"""
