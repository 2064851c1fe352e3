"""Genome-scale work: reading FASTA and cutting it into model windows."""
