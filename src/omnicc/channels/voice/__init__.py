"""Voice channel: SIP signalling (stack and B2BUA) with media in rtpengine."""
