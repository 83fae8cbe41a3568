"""Ports, protocol limits and other constants shared by every layer."""

from __future__ import annotations

from typing import Final

#: RFC 8314 §7.3: "submissions", SMTP submission over implicit TLS.
SUBMISSIONS_PORT: Final = 465
#: RFC 6409: message submission, upgraded with STARTTLS (required by smtpsec).
SUBMISSION_PORT: Final = 587
#: RFC 5321 relay port; submitting there is discouraged (R-6409-3.1-1).
SMTP_PORT: Final = 25

#: RFC 5321 §4.5.3.1.5 says 512 octets per reply line; real servers exceed it,
#: so accept up to 4 KiB and no more (R-5321-4.5.3.1-2).
MAX_REPLY_LINE: Final = 4096
#: An EHLO reply with a few dozen extensions is normal; 1,000 lines is an attack.
MAX_REPLY_LINES: Final = 1000
#: Bound on one whole (multi-line) reply, so a hostile server cannot grow memory.
MAX_REPLY_BYTES: Final = 64 * 1024
#: RFC 5321 §4.5.3.1.4: command line limit, including CRLF.
MAX_COMMAND_LINE: Final = 512
#: RFC 5321 §4.5.3.1: local-part, domain and path limits in octets.
MAX_LOCAL_PART: Final = 64
MAX_DOMAIN: Final = 255
MAX_PATH: Final = 256

#: Default chunk size when streaming a message body.
BODY_CHUNK_SIZE: Final = 64 * 1024

#: Seconds to wait for the 221 to QUIT when closing: a server that never answers
#: must not hold the caller for a whole reply timeout (R-8314-3.4-2).
QUIT_WAIT: Final = 2.0
