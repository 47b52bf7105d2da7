"""Offline replay of recorded episodes through a policy backend, for regression tests of models and configs;
see docs/scoring.md (Replay)."""
