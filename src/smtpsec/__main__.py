"""``python -m smtpsec``: the same command line as the ``smtpsec`` script."""

from __future__ import annotations

from smtpsec._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
