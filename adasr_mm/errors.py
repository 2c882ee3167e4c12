"""User-facing errors.

Anything the user can fix (bad path, bad config value, unknown model) raises :class:`AdasrError` with a message
that names the problem and the fix. The CLI prints it as one line on stderr and exits with code 2; everything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class AdasrError(Exception):
    """A problem with the user's input, config or environment, reported without a traceback."""


class ConfigError(AdasrError):
    """A bad config key or value."""


class InputError(AdasrError):
    """Missing, empty, undecodable or unsupported input media."""


class ModelLoadError(AdasrError):
    """A policy/ASR/describer model that cannot be found or loaded."""
