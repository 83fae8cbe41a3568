"""The I/O-free SMTP client core: bytes in, events out.

Nothing in this package imports ``socket``, ``ssl``, ``time``, ``logging`` or
``asyncio`` (a test asserts it): it can be driven by any transport.
"""

from ._body import BdatEncoder, DataEncoder, LineNormalizer
from ._commands import (
    Command,
    ehlo_name,
    encode_command,
    first_control_character,
    mailbox_needs_smtputf8,
    validate_mailbox,
    xtext,
)
from ._connection import ClientConnection, Response, State
from ._extensions import Extensions, is_mechanism_name, parse_ehlo
from ._replies import EnhancedStatus, Reply, ReplyParser, split_enhanced_status

__all__ = [
    "BdatEncoder",
    "ClientConnection",
    "Command",
    "DataEncoder",
    "EnhancedStatus",
    "Extensions",
    "LineNormalizer",
    "Reply",
    "ReplyParser",
    "Response",
    "State",
    "ehlo_name",
    "encode_command",
    "first_control_character",
    "is_mechanism_name",
    "mailbox_needs_smtputf8",
    "parse_ehlo",
    "split_enhanced_status",
    "validate_mailbox",
    "xtext",
]
