// A nodemailer smtp-server for smtpsec's interop tests (REQUIRETLS, RFC 8689).
//
// Usage: node smtp_server.js PORT KEY CERT MAILDIR [--hide-requiretls]
// Implicit TLS on PORT with the given key and certificate; AUTH PLAIN/LOGIN for
// ann / interop-pw; every accepted message is written to MAILDIR as
// <n>.json ({from, to, params, data}). Prints "ready" once it listens.
'use strict'

const fs = require('node:fs')
const path = require('node:path')
const { SMTPServer } = require('smtp-server')

const [port, keyFile, certFile, maildir, flag] = process.argv.slice(2)
let count = 0

const server = new SMTPServer({
    secure: true,
    key: fs.readFileSync(keyFile),
    cert: fs.readFileSync(certFile),
    authMethods: ['PLAIN', 'LOGIN'],
    hideREQUIRETLS: flag === '--hide-requiretls',
    onAuth(auth, session, callback) {
        if (auth.username === 'ann' && auth.password === 'interop-pw') {
            return callback(null, { user: 'ann' })
        }
        return callback(new Error('Invalid username or password'))
    },
    onData(stream, session, callback) {
        const chunks = []
        stream.on('data', (chunk) => chunks.push(chunk))
        stream.on('end', () => {
            count += 1
            const record = {
                from: session.envelope.mailFrom.address,
                params: session.envelope.mailFrom.args || {},
                to: session.envelope.rcptTo.map((r) => r.address),
                data: Buffer.concat(chunks).toString('latin1'),
            }
            fs.writeFileSync(path.join(maildir, `${count}.json`), JSON.stringify(record))
            callback(null, 'Message queued')
        })
    },
})

server.on('error', (err) => {
    console.error(`smtp-server error: ${err.message}`)
})
server.listen(Number(port), '127.0.0.1', () => {
    console.log('ready')
})
