# Agentic sessions arrive with their own issue; the app (label "agentic_sessions") exists now so
# that its first migration carries the right label.
