"""Enphase Envoy / IQ Gateway: its local API (firmware 7.x/8.x over HTTPS with a token, or
older firmware over plain HTTP), the Enlighten cloud that issues its tokens, and a simulator of
both."""
