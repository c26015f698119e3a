"""Bridges to tools users already drive experiments with (optional extras, imported only on use)."""
