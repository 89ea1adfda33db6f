"""A focused SIP stack (RFC 3261): messages, transports, transactions, dialogs."""
