"""Notification backends, one module each: console (default), webhook, bot (slack-sdk)."""

from __future__ import annotations

from pathlib import Path

from ...config import SlackConfig
from .base import DeliveryError, Notifier

__all__ = ["DeliveryError", "Notifier", "make_notifier"]


def make_notifier(cfg: SlackConfig, state_dir: Path) -> Notifier:
    """The backend the configuration asks for."""
    if cfg.backend == "bot":
        from .slackbot import SlackBotNotifier

        return SlackBotNotifier(cfg.token, cfg.channel, base_url=cfg.base_url,
                                timeout=cfg.timeout_s, upload_plots=cfg.upload_plots)
    if cfg.backend == "webhook":
        from .webhook import WebhookNotifier

        return WebhookNotifier(cfg.webhook_url, timeout=cfg.timeout_s)
    from .console import ConsoleNotifier

    return ConsoleNotifier(state_dir / "alerts.jsonl")
