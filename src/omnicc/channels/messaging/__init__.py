"""Messaging channels: SMS and WhatsApp through Twilio, the WhatsApp Cloud API, Telegram bots
and Facebook Messenger, all in one shape (`shape.Provider`): a webhook is verified, parsed into
messages and delivery receipts, and an outgoing message is sent over the provider's REST API."""
