"""The usage dashboard: aggregates of the recorded events (never the events), and their page."""
