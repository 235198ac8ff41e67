"""Speed helpers that measured >= 5 % on a user-facing path, fenced here.

Each module lists its callers and the figure that keeps it (docs/performance.md, "What was
tried"). A helper whose gain falls under 5 % of a login, or whose callers are gone, is deleted,
not kept "just in case". Nothing here is imported by the domain.
"""
