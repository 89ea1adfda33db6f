"""The email channel: IMAP in (IDLE or polling), SMTP out, MIME with the standard library,
HTML sanitised with nh3. The use cases are `omnicc.app.emails`; docs in `docs/email.md`."""
