"""Errors a user can cause and fix.

Everything raised as :class:`InputError` is reported to the user as one line (no traceback) by
the CLI and by the Snakemake script adapters; the message names the file, the record or sample,
and what to do.
"""

from __future__ import annotations


class VcfbertError(Exception):
    """Base class of the errors vcfbert reports as a single line."""


class InputError(VcfbertError, ValueError):
    """Bad input data or configuration that the user has to fix."""


class IntegrityError(VcfbertError):
    """A file written by vcfbert is incomplete or corrupted (checksum or shape mismatch)."""
