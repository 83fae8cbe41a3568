"""Helpers of the Django tests (a module name no other test directory uses)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

from poolkit import finished

__all__ = ["finished", "legacy_settings_allowed"]


@contextlib.contextmanager
def legacy_settings_allowed() -> Iterator[None]:
    """Set (or restore) ``EMAIL_*`` settings, which Django 6.1 deprecates, without its warning.

    Django 6.1 warns (``RemovedInDjango2028Warning``, a pending deprecation)
    when such a setting is *set*; these tests set them on purpose (the 4.2/5.2
    configuration, or "MAILERS ignores them"). Only that warning is silenced,
    only while settings change: what smtpsec does with them is still checked
    by the ``deprecation_free`` fixture.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The EMAIL_\w+ setting is deprecated")
        yield
