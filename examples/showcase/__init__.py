"""The showcase cast that ``make demo`` runs: see README.md, "The showcase"."""
