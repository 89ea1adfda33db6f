"""Channel adapters: one package per channel (voice, webchat, email, messaging, webform)."""
