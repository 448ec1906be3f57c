"""The report: scored results -> the paper's claims -> tables -> HTML.

results.py (the scored runs), verdicts.py (the rule) and claims.py (the claims judged), tables.py
(Tables 1 and 2), sweeps.py (sweeps and the robustness test), header.py (what ran and how it differs
from the paper's setup), plots.py, render.py. It never imports dmtrack.chain (tests/test_structure.py).
"""
