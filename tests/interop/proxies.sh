#!/usr/bin/env bash
# Run real proxies on loopback for smtpsec's proxy tests (issue 15):
#
#   microsocks   SOCKS5, no authentication            SMTPSEC_PROXY_SOCKS5_PORT
#   microsocks   SOCKS5, user/password (RFC 1929)     SMTPSEC_PROXY_SOCKS5_AUTH_PORT
#   dante        SOCKS4a + SOCKS5, loopback targets only  SMTPSEC_PROXY_DANTE_PORT
#   tinyproxy    HTTP CONNECT, no authentication      SMTPSEC_PROXY_HTTP_PORT
#   tinyproxy    HTTP CONNECT, Basic credentials      SMTPSEC_PROXY_HTTP_AUTH_PORT
#   OpenSSH      SOCKS4, SOCKS4a (host names), SOCKS5: `ssh -D` through a private
#                sshd on loopback (key login)         SMTPSEC_PROXY_SSH_SOCKS_PORT
#
# Usage: tests/interop/proxies.sh start|stop|status|env
#
#   start   Install dante-server, microsocks, tinyproxy and openssh-server if missing (Debian/apt,
#           as root), write private configs and start every daemon in the
#           foreground of its own process group (no systemd, no /etc changes);
#           waits until every port accepts. Idempotent.
#   stop    Stop them; never fails when nothing runs. Removes env.json.
#   status  Exit 0 when every port accepts, else 1.
#   env     Print KEY=value lines.
#
# Every proxy listens on 127.0.0.1 only. dante's rules allow targets in
# 127.0.0.0/8 only; the tests never ask any proxy for anything else.
#
# Environment: SMTPSEC_PROXIES_DIR, state dir (default /tmp/smtpsec-proxies).
set -euo pipefail

STATE=${SMTPSEC_PROXIES_DIR:-/tmp/smtpsec-proxies}
ENV_JSON=$STATE/env.json
HOST=127.0.0.1
USER_NAME=proxyuser
PASSWORD_FILE=$STATE/password
READY_TIMEOUT=20
PACKAGES=(dante-server microsocks tinyproxy openssh-server openssh-client)
NAMES=(socks5 socks5auth dante http httpauth sshd sshsocks)

log() { printf 'proxies.sh: %s\n' "$*" >&2; }
die() {
  printf 'proxies.sh: error: %s\n' "$*" >&2
  exit 1
}

[[ $STATE == /* && $STATE =~ ^[A-Za-z0-9_./-]+$ ]] ||
  die "SMTPSEC_PROXIES_DIR must be an absolute path of letters, digits and _ . / -"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
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
  [[ $(id -u) -eq 0 ]] || die "installing ${missing[*]} needs root"
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get: install them by hand"
  local apt_log=$STATE/apt.log rc=0
  log "installing ${missing[*]} with apt-get (output: $apt_log)"
  # Without systemd, maintainer scripts would start the stock daemons; a
  # temporary policy-rc.d (exit 101 = "not allowed") stops that.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    made_policy=1
  fi
  apt() {
    DEBIAN_FRONTEND=noninteractive apt-get -y -q --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
  }
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    apt update >"$apt_log" 2>&1 || rc=$?
  fi
  if ((rc == 0)); then
    apt install "${missing[@]}" >>"$apt_log" 2>&1 || {
      log "install failed; refreshing package lists and retrying"
      apt update >>"$apt_log" 2>&1 && apt install "${missing[@]}" >>"$apt_log" 2>&1
    } || rc=$?
  fi
  ((made_policy)) && rm -f "$policy"
  if ((rc != 0)); then
    tail -n 25 "$apt_log" >&2
    die "apt-get could not install ${missing[*]} (exit $rc; full output in $apt_log)"
  fi
}

port_of() { [[ -s $STATE/$1.port ]] && cat "$STATE/$1.port"; }

port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

all_ready() {
  local name port
  for name in "${NAMES[@]}"; do
    port=$(port_of "$name") || return 1
    port_open "$port" || return 1
  done
}

configure() {
  mkdir -p "$STATE"
  chmod 0755 "$STATE"
  [[ -s $PASSWORD_FILE ]] || python3 -c 'import secrets; print("pw-" + secrets.token_hex(8))' >"$PASSWORD_FILE"
  local name
  for name in "${NAMES[@]}"; do free_port >"$STATE/$name.port"; done
  local password
  password=$(<"$PASSWORD_FILE")
  cat >"$STATE/danted.conf" <<EOF
logoutput: $STATE/danted.log
internal: $HOST port = $(port_of dante)
external: $HOST
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {
  from: 127.0.0.0/8 to: 0.0.0.0/0
}
socks pass {
  from: 127.0.0.0/8 to: 127.0.0.0/8
  command: connect
}
socks block {
  from: 0.0.0.0/0 to: 0.0.0.0/0
}
EOF
  local auth
  for auth in 0 1; do
    local file=$STATE/tinyproxy$auth.conf port
    port=$(port_of "$([[ $auth == 1 ]] && echo httpauth || echo http)")
    {
      echo "Port $port"
      echo "Listen $HOST"
      echo "Timeout 60"
      echo "LogFile \"$STATE/tinyproxy$auth.log\""
      echo "LogLevel Info"
      echo "PidFile \"$STATE/tinyproxy$auth.pid\""
      echo "MaxClients 100"
      echo "Allow 127.0.0.1"
      echo "DisableViaHeader Yes"
      [[ $auth == 1 ]] && echo "BasicAuth $USER_NAME $password"
    } >"$file"
  done
  # OpenSSH's dynamic forwarding is the SOCKS4a server (dante has no name form):
  # a private sshd on loopback, and `ssh -D` logged in to it with a fresh key.
  rm -f "$STATE"/ssh_host_key* "$STATE"/ssh_client_key*
  ssh-keygen -q -t ed25519 -N '' -f "$STATE/ssh_host_key"
  ssh-keygen -q -t ed25519 -N '' -f "$STATE/ssh_client_key"
  cp "$STATE/ssh_client_key.pub" "$STATE/ssh_authorized_keys"
  cat >"$STATE/sshd_config" <<EOF
Port $(port_of sshd)
ListenAddress $HOST
HostKey $STATE/ssh_host_key
PidFile $STATE/sshd.pid
AuthorizedKeysFile $STATE/ssh_authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding local
PermitOpen 127.0.0.1:* localhost:*
X11Forwarding no
EOF
}

start_one() { # start NAME COMMAND...: in its own session, pid in NAME.pid
  local name=$1
  shift
  setsid "$@" >>"$STATE/$name.out" 2>&1 </dev/null &
  echo $! >"$STATE/$name.daemon"
}

stop_daemons() {
  local name pid
  for name in "${NAMES[@]}"; do
    [[ -s $STATE/$name.daemon ]] || continue
    pid=$(<"$STATE/$name.daemon")
    if [[ $pid =~ ^[0-9]+$ ]] && [[ -d /proc/$pid ]]; then
      kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/$name.daemon"
  done
}

env_lines() {
  cat <<EOF
SMTPSEC_PROXY_HOST=$HOST
SMTPSEC_PROXY_SOCKS5_PORT=$(port_of socks5)
SMTPSEC_PROXY_SOCKS5_AUTH_PORT=$(port_of socks5auth)
SMTPSEC_PROXY_DANTE_PORT=$(port_of dante)
SMTPSEC_PROXY_HTTP_PORT=$(port_of http)
SMTPSEC_PROXY_HTTP_AUTH_PORT=$(port_of httpauth)
SMTPSEC_PROXY_SSH_SOCKS_PORT=$(port_of sshsocks)
SMTPSEC_PROXY_USER=$USER_NAME
SMTPSEC_PROXY_PASSWORD=$(<"$PASSWORD_FILE")
EOF
}

write_env_json() {
  env_lines | python3 -c '
import json, sys
pairs = dict(line.rstrip("\n").split("=", 1) for line in sys.stdin if "=" in line)
print(json.dumps(pairs, indent=2))' >"$ENV_JSON.tmp"
  mv "$ENV_JSON.tmp" "$ENV_JSON"
}

cmd_start() {
  mkdir -p "$STATE"
  if all_ready && [[ -s $ENV_JSON ]]; then
    env_lines
    return 0
  fi
  stop_daemons
  ensure_packages
  configure
  local password
  password=$(<"$PASSWORD_FILE")
  start_one socks5 microsocks -i "$HOST" -p "$(port_of socks5)"
  start_one socks5auth microsocks -i "$HOST" -p "$(port_of socks5auth)" -u "$USER_NAME" -P "$password"
  start_one dante danted -f "$STATE/danted.conf"
  start_one http tinyproxy -d -c "$STATE/tinyproxy0.conf"
  start_one httpauth tinyproxy -d -c "$STATE/tinyproxy1.conf"
  mkdir -p /run/sshd # sshd's privilege-separation directory
  start_one sshd "$(command -v sshd || echo /usr/sbin/sshd)" -D -e -f "$STATE/sshd_config"
  local waited=0
  until port_open "$(port_of sshd)"; do
    ((waited++ < READY_TIMEOUT * 10)) || break
    sleep 0.1
  done
  start_one sshsocks ssh -N -T -p "$(port_of sshd)" -i "$STATE/ssh_client_key" \
    -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ExitOnForwardFailure=yes -o ServerAliveInterval=30 \
    -D "$HOST:$(port_of sshsocks)" "root@$HOST"
  waited=0
  until all_ready; do
    ((waited++ < READY_TIMEOUT * 10)) || {
      tail -n 20 "$STATE"/*.out "$STATE"/*.log 2>/dev/null >&2 || true
      stop_daemons
      die "the proxies did not start within ${READY_TIMEOUT}s (logs in $STATE)"
    }
    sleep 0.1
  done
  write_env_json
  log "microsocks, dante, tinyproxy and ssh -D run on $HOST (env: $ENV_JSON)"
  env_lines
}

cmd_stop() {
  stop_daemons
  rm -f "$ENV_JSON"
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) all_ready ;;
env) env_lines ;;
*) die "usage: $0 start|stop|status|env" ;;
esac
