"""Nursery allocation (保育所入所選考): input, rules, CP-SAT optimiser, verifier, explanations.

Core modules here import nothing from the web stack; ``cli.py`` and ``router.py`` are thin adapters.
"""
