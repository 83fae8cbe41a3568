#!/usr/bin/env bash
# Install the Node.js SMTP servers of the interop tests (Haraka, nodemailer's
# smtp-server) into tests/interop/node/node_modules, exactly as locked in
# package-lock.json. Needs node and npm (a fresh CI machine has both). No
# install scripts run: the servers are plain JavaScript.
#
# Usage: tests/interop/node.sh        (idempotent: skips when already installed)
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/node"
command -v node >/dev/null || { echo "node.sh: node is not installed" >&2; exit 2; }
command -v npm >/dev/null || { echo "node.sh: npm is not installed" >&2; exit 2; }
stamp="$DIR/node_modules/.smtpsec-lock"
if [ -f "$stamp" ] && cmp -s "$stamp" "$DIR/package-lock.json"; then
  echo "node.sh: Haraka and smtp-server already installed"
  exit 0
fi
npm ci --prefix "$DIR" --ignore-scripts --no-audit --no-fund --loglevel=error
cp "$DIR/package-lock.json" "$stamp"
echo "node.sh: installed $(node -p "require('$DIR/node_modules/Haraka/package.json').version" 2>/dev/null || echo '?') Haraka and smtp-server into $DIR/node_modules"
