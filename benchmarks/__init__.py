"""Benchmarks: the real bot process under load against the fake Bot API and OpenRouter servers.

``python -m benchmarks.run`` runs them and prints the figures; see ``benchmarks/RESULTS.md``.
"""
