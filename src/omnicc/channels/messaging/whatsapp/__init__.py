"""Meta's WhatsApp Business Cloud API (see `provider`)."""

from omnicc.channels.messaging.whatsapp.provider import WhatsAppProvider

__all__ = ["WhatsAppProvider"]
