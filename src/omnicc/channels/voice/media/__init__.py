"""Media for the voice channel: rtpengine (ng client, daemon, call-level bridge), DTMF,
prompts (espeak-ng), recordings (pcap to WAV) and a small RTP endpoint with G.711 tools."""
