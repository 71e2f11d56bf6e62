"""Detection rules as pure functions of figures and time, plus the agent glue that feeds them.

Each rule module (`spike`, `budget`, `first_use`, `orphan`, `rotation`, `unknown_price`) takes
plain values and returns a finding or None; `pipelines.detect.agents` turns findings into alerts.
"""
