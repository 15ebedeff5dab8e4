"""vcfbert: genotype imputation with a retrieval-augmented transformer."""

__version__ = "0.1.0"

__all__ = ["__version__"]
