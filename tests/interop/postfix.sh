#!/usr/bin/env bash
# Run a real Postfix + Dovecot (SASL) submission server on loopback for smtpsec's
# interop tests.
#
# Usage: tests/interop/postfix.sh start|stop|status|env
#
#   start   Install postfix, dovecot-core and openssl if missing (Debian/apt, as
#           root), create a throwaway CA + server certificate, render the configs
#           and start both daemons; waits until both ports accept connections.
#           Idempotent: if everything already runs, it only reprints the env.
#   stop    Stop both daemons; never fails when nothing runs. Keeps the state dir
#           (logs, mail) for post-mortems but removes env.json.
#   status  Exit 0 when both daemons run and both ports accept, else 1.
#   env     Print KEY=value lines (eval-able; also valid for $GITHUB_ENV).
#
# Layout: a *private* Postfix instance (`postfix -c <state>/postfix`) with its own
# config, queue and data directories under the state dir, so /etc/postfix and
# /var/spool/postfix are never touched and a system Postfix, if any, keeps
# running. Dovecot runs only its auth service from its own config file
# (`dovecot -c <state>/dovecot/dovecot.conf`), answering on
# <state>/spool/private/auth. Daemons are started directly (no systemd).
#
# Environment (all optional):
#   SMTPSEC_INTEROP_DIR            state dir, absolute (default /tmp/smtpsec-interop)
#   SMTPSEC_INTEROP_IMPLICIT_PORT  implicit-TLS submissions port
#   SMTPSEC_INTEROP_STARTTLS_PORT  STARTTLS submission port
# Without them, start picks two free loopback ports (so nothing else running on
# this machine can collide) and records them in env.json; status and stop read
# them back from there.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${SMTPSEC_INTEROP_DIR:-/tmp/smtpsec-interop}
HOST=127.0.0.1
ENV_JSON=${SMTPSEC_INTEROP_DIR:-/tmp/smtpsec-interop}/env.json
saved_port() { [[ -s $ENV_JSON ]] && sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p" "$ENV_JSON"; }
IMPLICIT_PORT=${SMTPSEC_INTEROP_IMPLICIT_PORT:-$(saved_port SMTPSEC_INTEROP_IMPLICIT_PORT || true)}
STARTTLS_PORT=${SMTPSEC_INTEROP_STARTTLS_PORT:-$(saved_port SMTPSEC_INTEROP_STARTTLS_PORT || true)}
DOMAIN=example.test
USER_LOCAL=alice
USER_ADDR=$USER_LOCAL@$DOMAIN
SIZE_LIMIT=20971520 # 20 MiB
READY_TIMEOUT=30

PF_CONF=$STATE/postfix
PF_QUEUE=$STATE/spool
PF_DATA=$STATE/data
DC_DIR=$STATE/dovecot
DC_CONF=$DC_DIR/dovecot.conf
DC_BASE=$DC_DIR/run
DC_USERS=$DC_DIR/users
DC_LOG=$STATE/dovecot.log
TLS_DIR=$STATE/tls
CAFILE=$TLS_DIR/ca.crt
MAIL_BASE=$STATE/mail
MAILDIR=$MAIL_BASE/$USER_LOCAL
LOG=$STATE/postfix.log
PASSWORD_FILE=$STATE/password

PACKAGES=(postfix dovecot-core openssl)

log() { printf 'postfix.sh: %s\n' "$*" >&2; }
die() {
  printf 'postfix.sh: error: %s\n' "$*" >&2
  exit 1
}

check_settings() {
  # Paths go into sed substitutions and Postfix/Dovecot configs unquoted.
  [[ $STATE == /* ]] || die "SMTPSEC_INTEROP_DIR must be an absolute path (got '$STATE')"
  [[ $STATE =~ ^[A-Za-z0-9_./-]+$ ]] ||
    die "SMTPSEC_INTEROP_DIR may only contain letters, digits and _ . / - (got '$STATE')"
  local port
  for port in "$IMPLICIT_PORT" "$STARTTLS_PORT"; do
    [[ -z $port ]] && continue # chosen at start
    [[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) ||
      die "port must be a number in 1..65535 (got '$port')"
  done
  [[ -z $IMPLICIT_PORT || $IMPLICIT_PORT != "$STARTTLS_PORT" ]] ||
    die "the implicit and STARTTLS ports must differ"
}

# A loopback port nobody listens on right now (the kernel's choice for port 0).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

choose_ports() {
  # Ports given by the caller are used as given: being busy is then an error.
  # Ports remembered from an earlier run, or none, are replaced by free ones.
  if [[ -n ${SMTPSEC_INTEROP_IMPLICIT_PORT:-} ]]; then
    ! port_open "$IMPLICIT_PORT" || die "port $IMPLICIT_PORT (SMTPSEC_INTEROP_IMPLICIT_PORT) is busy"
  elif [[ -z $IMPLICIT_PORT ]] || port_open "$IMPLICIT_PORT"; then
    IMPLICIT_PORT=$(free_port)
  fi
  if [[ -n ${SMTPSEC_INTEROP_STARTTLS_PORT:-} ]]; then
    ! port_open "$STARTTLS_PORT" || die "port $STARTTLS_PORT (SMTPSEC_INTEROP_STARTTLS_PORT) is busy"
  fi
  while [[ -z $STARTTLS_PORT || $STARTTLS_PORT == "$IMPLICIT_PORT" ]] || port_open "$STARTTLS_PORT"; do
    [[ -z ${SMTPSEC_INTEROP_STARTTLS_PORT:-} ]] || die "the implicit and STARTTLS ports must differ"
    STARTTLS_PORT=$(free_port)
  done
}

need_root() {
  [[ $(id -u) -eq 0 ]] || die "'$1' must run as root (it installs packages and manages daemons); try: sudo $0 $1"
}

is_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

ensure_packages() {
  local missing=() pkg
  for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install them by hand"
  local apt_log=$STATE/apt.log
  log "installing ${missing[*]} with apt-get (output: $apt_log)"
  # "No configuration" keeps the package from writing /etc/postfix/main.cf; we
  # run a private instance anyway.
  printf '%s\n' \
    'postfix postfix/main_mailer_type select No configuration' \
    'postfix postfix/mailname string localhost' | debconf-set-selections
  # Without systemd, maintainer scripts would start the stock daemons with their
  # stock configs; a temporary policy-rc.d (exit 101 = "not allowed") stops that.
  local policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  local rc=0
  # Fresh images ship without package lists; otherwise try the lists we have
  # first and refresh them only if they are too old to install from.
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    apt_get update >"$apt_log" 2>&1 || rc=$?
  fi
  if ((rc == 0)); then
    apt_get install "${missing[@]}" >>"$apt_log" 2>&1 || {
      log "install failed; refreshing package lists and retrying"
      apt_get update >>"$apt_log" 2>&1 && apt_get install "${missing[@]}" >>"$apt_log" 2>&1
    } || rc=$?
  fi
  if [[ $(trap -p EXIT) ]]; then
    rm -f "$policy"
    trap - EXIT
  fi
  if ((rc != 0)); then
    tail -n 25 "$apt_log" >&2
    die "apt-get could not install ${missing[*]} (exit $rc; full output in $apt_log)"
  fi
}

apt_get() { # apt-get, non-interactive, without recommends, keeping existing conffiles
  DEBIAN_FRONTEND=noninteractive apt-get -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

make_certs() {
  # Reuse a certificate that is still valid for a day; otherwise mint a fresh CA
  # and leaf together so the pair always matches.
  if [[ -s $CAFILE && -s $TLS_DIR/server.crt && -s $TLS_DIR/server.key ]] &&
    openssl x509 -checkend 86400 -noout -in "$TLS_DIR/server.crt" >/dev/null &&
    openssl x509 -checkend 86400 -noout -in "$CAFILE" >/dev/null; then
    return 0
  fi
  log "creating a throwaway CA and a certificate for localhost / 127.0.0.1 in $TLS_DIR"
  install -d -m 0755 "$TLS_DIR"
  local cnf=$TLS_DIR/openssl.cnf
  cat >"$cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = smtpsec interop throwaway CA
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
  (
    umask 077
    openssl req -x509 -new -config "$cnf" -extensions ca_ext -sha256 -days 3650 \
      -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj '/CN=smtpsec interop throwaway CA' \
      -keyout "$TLS_DIR/ca.key" -out "$CAFILE" 2>/dev/null
    openssl req -new -config "$cnf" -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -subj '/CN=localhost' -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" 2>/dev/null
    openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$CAFILE" -CAkey "$TLS_DIR/ca.key" \
      -set_serial "0x$(openssl rand -hex 16)" -sha256 -days 825 \
      -extfile "$cnf" -extensions server_ext -out "$TLS_DIR/server.crt" 2>/dev/null
  )
  rm -f "$TLS_DIR/server.csr"
  chmod 0644 "$CAFILE" "$TLS_DIR/server.crt"
}

render() { # render TEMPLATE DEST
  sed -e "s|@STATE@|$STATE|g" -e "s|@PF_CONF@|$PF_CONF|g" -e "s|@PF_QUEUE@|$PF_QUEUE|g" \
    -e "s|@PF_DATA@|$PF_DATA|g" -e "s|@DOMAIN@|$DOMAIN|g" -e "s|@USER@|$USER_ADDR|g" \
    -e "s|@USER_LOCAL@|$USER_LOCAL|g" -e "s|@MAIL_BASE@|$MAIL_BASE|g" \
    -e "s|@MAIL_UID@|$MAIL_UID|g" -e "s|@MAIL_GID@|$MAIL_GID|g" \
    -e "s|@SIZE_LIMIT@|$SIZE_LIMIT|g" -e "s|@TLS_DIR@|$TLS_DIR|g" -e "s|@LOG@|$LOG|g" \
    -e "s|@IMPLICIT_PORT@|$IMPLICIT_PORT|g" -e "s|@STARTTLS_PORT@|$STARTTLS_PORT|g" \
    -e "s|@DC_BASE@|$DC_BASE|g" -e "s|@DC_LOG@|$DC_LOG|g" -e "s|@DC_USERS@|$DC_USERS|g" \
    "$1" >"$2.tmp"
  if grep -q '@[A-Z_]*@' "$2.tmp"; then
    die "unrendered placeholder in $2.tmp: $(grep -o "@[A-Z_]*@" "$2.tmp" | head -1)"
  fi
  mv -f "$2.tmp" "$2"
}

configure() {
  # Postfix creates the queue's subdirectories itself but wants the root there.
  install -d -m 0755 "$STATE" "$PF_CONF" "$DC_DIR" "$PF_QUEUE"
  # Mail is delivered as the user who asked for the server (sudo's caller), so
  # their tests can read it; others get nobody, as virtual(8) refuses uids
  # below virtual_minimum_uid (100), root included.
  MAIL_UID=${SUDO_UID:-0}
  MAIL_GID=${SUDO_GID:-0}
  if ((MAIL_UID < 100)); then
    MAIL_UID=$(id -u nobody)
    MAIL_GID=$(getent group nogroup | cut -d: -f3)
  fi
  install -d -m 0700 -o "$MAIL_UID" -g "$MAIL_GID" "$MAIL_BASE"

  if [[ ! -s $PASSWORD_FILE ]]; then
    (umask 077 && openssl rand -hex 16 >"$PASSWORD_FILE")
  fi
  chmod 0644 "$PASSWORD_FILE" # a throwaway secret the (non-root) tests must read
  local password
  password=$(<"$PASSWORD_FILE")
  (umask 027 && printf '%s:{PLAIN}%s::::::\n' "$USER_ADDR" "$password" >"$DC_USERS")
  chgrp dovecot "$DC_USERS"

  make_certs
  render "$HERE/main.cf.in" "$PF_CONF/main.cf"
  render "$HERE/master.cf.in" "$PF_CONF/master.cf"
  render "$HERE/dovecot.conf.in" "$DC_CONF"
  # postlogd keeps an existing file's mode; pre-create it readable for tests.
  [[ -e $LOG ]] || install -m 0644 /dev/null "$LOG"
  # With maillog_file set, Postfix commands report problems in the log file.
  postfix -c "$PF_CONF" check >&2 || {
    tail -n 5 "$LOG" >&2
    die "postfix check failed for $PF_CONF (log: $LOG)"
  }
  doveconf -c "$DC_CONF" -n >/dev/null || die "doveconf rejected $DC_CONF"
}

# /proc rather than `kill -0`, which says EPERM to a non-root `status`.
alive() { [[ -d /proc/$1 ]]; }

master_pid() {
  # Read master's pid file directly: `postfix status` would log a line per poll.
  local pid
  [[ -r $PF_QUEUE/pid/master.pid ]] || return 1
  pid=$(tr -d ' \n' <"$PF_QUEUE/pid/master.pid")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && printf '%s\n' "$pid"
}

postfix_running() { master_pid >/dev/null; }

dovecot_pid() {
  local pid
  [[ -r $DC_BASE/master.pid ]] || return 1
  pid=$(<"$DC_BASE/master.pid")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && printf '%s\n' "$pid"
}

port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

all_ready() {
  postfix_running && dovecot_pid >/dev/null && [[ -S $PF_QUEUE/private/auth ]] &&
    port_open "$IMPLICIT_PORT" && port_open "$STARTTLS_PORT"
}

env_lines() {
  local password
  password=$(<"$PASSWORD_FILE")
  cat <<EOF
SMTPSEC_INTEROP_HOST=$HOST
SMTPSEC_INTEROP_IMPLICIT_PORT=$IMPLICIT_PORT
SMTPSEC_INTEROP_STARTTLS_PORT=$STARTTLS_PORT
SMTPSEC_INTEROP_CAFILE=$CAFILE
SMTPSEC_INTEROP_USER=$USER_ADDR
SMTPSEC_INTEROP_PASSWORD=$password
SMTPSEC_INTEROP_MAILDIR=$MAILDIR
SMTPSEC_INTEROP_LOG=$LOG
SMTPSEC_INTEROP_SIZE_LIMIT=$SIZE_LIMIT
SMTPSEC_INTEROP_DIR=$STATE
EOF
}

write_env_json() {
  # Values are restricted to safe characters (check_settings, hex password), so
  # no JSON escaping is needed; ports and the size limit are numbers.
  env_lines | awk -F= '
    BEGIN { printf "{" }
    { printf "%s\n  \"%s\": ", (NR > 1 ? "," : ""), $1
      if ($2 ~ /^[0-9]+$/) printf "%s", $2; else printf "\"%s\"", $2 }
    END { printf "\n}\n" }' >"$ENV_JSON.tmp"
  chmod 0644 "$ENV_JSON.tmp"
  mv -f "$ENV_JSON.tmp" "$ENV_JSON"
}

stop_daemons() {
  if postfix_running; then
    log "stopping Postfix"
    postfix -c "$PF_CONF" stop >/dev/null 2>&1 || true
  fi
  local pid
  if pid=$(dovecot_pid); then
    log "stopping Dovecot (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
  fi
  # Both stop asynchronously; wait (bounded) so a following start can bind.
  local i
  for ((i = 0; i < 100; i++)); do
    if ! postfix_running && ! dovecot_pid >/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  if pid=$(dovecot_pid); then kill -KILL "$pid" 2>/dev/null || true; fi
  if postfix_running; then postfix -c "$PF_CONF" abort >/dev/null 2>&1 || true; fi
}

cmd_start() {
  need_root start
  install -d -m 0755 "$STATE"
  exec 9>>"$STATE/.lock" # serialise concurrent starts
  flock 9
  if [[ -n $IMPLICIT_PORT && -n $STARTTLS_PORT ]] && command -v postfix >/dev/null &&
    command -v dovecot >/dev/null && all_ready; then
    log "already running"
    write_env_json
    log "Postfix log: $LOG  Dovecot log: $DC_LOG  env: $ENV_JSON"
    return 0
  fi
  ensure_packages
  # A half-started previous run (one daemon up, or a stale socket) is reset.
  stop_daemons
  choose_ports
  configure
  # Dovecot never removes old sockets; a stale anvil-auth-penalty one would make
  # auth retry it for 5 s (see dovecot.conf.in).
  rm -rf "$DC_BASE"
  rm -f "$PF_QUEUE/private/auth"
  log "starting Dovecot (auth only)"
  # Daemons must not inherit our stdio or the lock (fd 9): a caller piping this
  # script (| tee) would wait for EOF forever, and the next start for the lock.
  dovecot -c "$DC_CONF" </dev/null >>"$DC_LOG" 2>&1 9>&- || {
    tail -n 5 "$DC_LOG" >&2
    die "dovecot failed to start; see $DC_LOG"
  }
  log "starting Postfix (config $PF_CONF)"
  postfix -c "$PF_CONF" start </dev/null >/dev/null 2>&1 9>&- ||
    die "postfix failed to start; see $LOG (and: postfix -c $PF_CONF start)"
  local i
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    if all_ready; then
      write_env_json
      log "ready on $HOST:$IMPLICIT_PORT (implicit TLS) and $HOST:$STARTTLS_PORT (STARTTLS)"
      log "Postfix log: $LOG  Dovecot log: $DC_LOG  env: $ENV_JSON"
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$LOG" "$DC_LOG" >&2 || true
  die "not ready after ${READY_TIMEOUT}s (ports $IMPLICIT_PORT/$STARTTLS_PORT, socket $PF_QUEUE/private/auth)"
}

cmd_stop() {
  if ! command -v postfix >/dev/null; then
    return 0 # never installed, so never started
  fi
  need_root stop
  rm -f "$ENV_JSON"
  stop_daemons
  log "stopped"
}

cmd_status() {
  local how=""
  if [[ $(id -u) -ne 0 ]]; then
    # Pid files and private/ are root-only; a non-root caller can check the ports.
    how=" (ports only; run as root for a full check)"
    if [[ -s $ENV_JSON ]] && port_open "$IMPLICIT_PORT" && port_open "$STARTTLS_PORT"; then
      echo "running$how: $HOST:$IMPLICIT_PORT (implicit TLS), $HOST:$STARTTLS_PORT (STARTTLS)"
      return 0
    fi
  elif command -v postfix >/dev/null && all_ready; then
    echo "running: $HOST:$IMPLICIT_PORT (implicit TLS), $HOST:$STARTTLS_PORT (STARTTLS); log $LOG"
    return 0
  fi
  echo "not running$how (state dir $STATE)"
  return 1
}

cmd_env() {
  [[ -s $ENV_JSON && -s $PASSWORD_FILE ]] ||
    die "no server state in $STATE; run: $0 start"
  env_lines
}

main() {
  check_settings
  case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) die "usage: $0 start|stop|status|env" ;;
  esac
}

main "$@"
