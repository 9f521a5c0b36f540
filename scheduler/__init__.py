"""Benchmark-regression scheduler: an APScheduler daemon that runs the asv suite on new
commits of a watched repository, publishes the asv site, judges the results and alerts.

The parts, one folder each (docs/ARCHITECTURE.md has the picture and the import rules):
``pipeline`` (poll → measure → publish → judge → apply), ``policy/`` (the pure judging
core), ``measure/`` (asv, git, the side-by-side runner), ``store/`` (state, outbox,
baselines), ``publish/`` (messages, plots, site, notifiers), ``dispatch/`` (where
measurements run); ``cli``, ``daemon``, ``jobs``, ``config``, ``lock`` around them.
"""
