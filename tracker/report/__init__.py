"""Reading runs back for people: summaries, text/markdown/csv/json, the paper paragraph, plots, device survey."""
