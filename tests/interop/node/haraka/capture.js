// Haraka queue plugin for smtpsec's interop tests: each accepted message is
// written to $SMTPSEC_HARAKA_MAILDIR as <transaction uuid>.eml (envelope in the
// first two lines) before the server says 250, so a test can count exactly
// what the server accepted.
'use strict'

const fs = require('node:fs')
const path = require('node:path')

exports.hook_queue = function (next, connection) {
    const txn = connection?.transaction
    if (!txn) return next()
    txn.message_stream.get_data((data) => {
        const head =
            `X-Envelope-From: ${txn.mail_from}\r\n` +
            `X-Envelope-To: ${txn.rcpt_to.map(String).join(',')}\r\n`
        const file = path.join(process.env.SMTPSEC_HARAKA_MAILDIR, `${txn.uuid}.eml`)
        fs.writeFileSync(file, Buffer.concat([Buffer.from(head), data]))
        next(OK)
    })
}

// Authenticated (relaying) sessions queue outbound: capture those the same way,
// so nothing is ever handed to Haraka's own outbound delivery.
exports.hook_queue_outbound = exports.hook_queue
