"""Slack's mrkdwn: what is markup, and how text that is not (a commit subject, a log) is
kept from becoming markup. Used by the messages and by the Slack backends."""

from __future__ import annotations


def escape(text: str) -> str:
    """Slack mrkdwn: ``&``, ``<`` and ``>`` are control characters (links, mentions,
    ``<!channel>``); escaped, they show as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _url(url: str) -> str:
    """A URL for ``<url|text>``: it can end neither the link nor its text."""
    return url.replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")


def mrkdwn_link(url: str, text: str) -> str:
    return f"<{_url(url)}|{escape(text)}>"
