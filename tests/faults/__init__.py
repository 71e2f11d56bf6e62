"""Fault injection: each test breaks one real part and asserts what was kept."""
