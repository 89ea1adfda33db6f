"""Facebook Messenger's Send API and page webhooks (see `provider`)."""

from omnicc.channels.messaging.messenger.provider import MessengerProvider

__all__ = ["MessengerProvider"]
