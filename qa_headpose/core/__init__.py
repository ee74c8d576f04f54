"""What every side of the package shares: angles and the Euler convention, the errors, atomic file writes.

Imports nothing of qa_headpose outside this folder (tests/test_layout.py checks it).
"""
