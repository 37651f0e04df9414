"""Readable case tables for the pure core: each row names a rule of DESIGN and its outcome."""
