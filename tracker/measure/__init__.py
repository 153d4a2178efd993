"""The energy arithmetic (meter) and the background thread that feeds it readings (sampler)."""
