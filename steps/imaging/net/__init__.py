"""Images fetched over http(s) with the URL treated as hostile input: the SSRF-guarded,
size-capped, signature-checked fetcher (:mod:`.fetching`) and its DNS-pinned connections
(:mod:`.pinned`). Below both ``sources`` (reference images) and ``providers`` (a provider's
answer that gives URLs instead of bytes), so either can use it.
"""
