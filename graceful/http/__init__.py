"""The HTTP side: aiohttp's connection handler observed by the drain (protocol.py), the
connection tracker and the drain (drain.py), the listeners, the health probes, the access
log, and the one adapter for aiohttp's internals (aiohttp_internals.py, checked by
aiohttp_check.py with the probes of aiohttp_probes.py; aiohttp_signals.py for its signals)."""
