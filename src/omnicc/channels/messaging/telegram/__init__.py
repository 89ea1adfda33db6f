"""Telegram's Bot API (see `provider`)."""

from omnicc.channels.messaging.telegram.provider import TelegramProvider

__all__ = ["TelegramProvider"]
