"""Hostile input: fuzzing, key attacks, spoofed headers, oversized and slow clients,
leaked secrets."""
