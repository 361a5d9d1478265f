"""Optional adapters to other libraries, each importing its third-party package only in its own module
(`isdaa.integrations.trl`: TRL's DPOTrainer with isdaa's objectives; extra `isdaa[trl]`). Nothing in isdaa's core
imports this package.

The version check lives here, without importing TRL, so that it can be tested (and read) without it.
"""

from __future__ import annotations

# TRL versions `isdaa.integrations.trl` supports: the 1.16 series (tested with 1.16.0, the `trl` / `bench` pins).
SUPPORTED_TRL = (1, 16)
TESTED_TRL = "1.16.0"


def check_trl_version(version: str) -> None:
    """ImportError (one line) unless `version` is a TRL release of the supported series."""
    parts = version.split("+")[0].split(".")
    try:
        series = (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        series = None
    if series != SUPPORTED_TRL:
        wanted = ".".join(map(str, SUPPORTED_TRL))
        raise ImportError(
            f"isdaa.integrations.trl supports TRL {wanted}.x (tested with {TESTED_TRL}); installed: trl {version}. "
            f"Install a supported one: pip install 'isdaa[trl]'"
        )
