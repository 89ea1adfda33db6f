"""Every provider by the name an account stores."""

from __future__ import annotations

from typing import Final

from omnicc.channels.messaging.messenger import MessengerProvider
from omnicc.channels.messaging.shape import Provider
from omnicc.channels.messaging.telegram import TelegramProvider
from omnicc.channels.messaging.twilio import TwilioProvider
from omnicc.channels.messaging.whatsapp import WhatsAppProvider

PROVIDERS: Final[dict[str, Provider]] = {
    "twilio": TwilioProvider(),
    "whatsapp": WhatsAppProvider(),
    "telegram": TelegramProvider(),
    "messenger": MessengerProvider(),
}
CHANNELS: Final[dict[str, tuple[str, ...]]] = {
    "twilio": ("sms", "whatsapp"), "whatsapp": ("whatsapp",), "telegram": ("telegram",),
    "messenger": ("messenger",),
}
"""The channels each provider can carry."""
