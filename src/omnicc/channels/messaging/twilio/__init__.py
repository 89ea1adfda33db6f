"""Twilio's Programmable Messaging: SMS and WhatsApp numbers (see `provider`)."""

from omnicc.channels.messaging.twilio.provider import TwilioProvider, twilio_signature

__all__ = ["TwilioProvider", "twilio_signature"]
