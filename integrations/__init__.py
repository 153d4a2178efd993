"""Thin adapters from training frameworks to the public ``tracker`` API."""
