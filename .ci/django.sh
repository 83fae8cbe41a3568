#!/usr/bin/env bash
# Django compatibility matrix: runs tests/integrations against the latest patch
# release of each supported Django line, each in its own venv on a CPython that
# line supports. Prints one summary line per Django line and exits non-zero when
# any line fails or cannot run. Needs only CPython with pip and venv (from pyenv,
# or on PATH); packages come from the package index through pip.
#
# Environment:
#   SMTPSEC_DJANGO_VENVS          where the venvs and logs live (default .venv-django);
#                                 a venv is reused while its Python still matches
#   SMTPSEC_DJANGO_ONLY           run only these lines, e.g. "6.1" or "4.2 5.2"
#   SMTPSEC_DJANGO_ALLOW_MISSING  1: a line with no suitable Python is reported
#                                 loudly but does not fail the run
#   SMTPSEC_DJANGO_SUMMARY        also write the summary lines to this file
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD

VENVS="${SMTPSEC_DJANGO_VENVS:-.venv-django}"
mkdir -p "$VENVS" || { echo "django.sh: cannot create $VENVS" >&2; exit 2; }
VENVS=$(cd "$VENVS" && pwd)

# line | pip requirement | CPython versions to try, in order. Each list holds only
# versions that Django line supports and smtpsec supports (>= 3.10): 4.2 runs on
# 3.10-3.12, 5.2 on 3.10-3.14, 6.1 on 3.12 and later. The first choices differ so
# that one run covers several interpreters.
MATRIX=(
  "4.2|django>=4.2,<4.3|3.11 3.10 3.12"
  "5.2|django>=5.2,<5.3|3.10 3.13 3.12 3.11 3.14"
  "6.1|django>=6.1,<6.2|3.13 3.12 3.14"
)

export PIP_DISABLE_PIP_VERSION_CHECK=1
unset PYTHONPATH  # test the repository as installed in each venv, nothing else

PYENV_DIR="${PYENV_ROOT:-}"
if [ -z "$PYENV_DIR" ] && command -v pyenv >/dev/null 2>&1; then
  PYENV_DIR=$(pyenv root 2>/dev/null || true)
fi
PYENV_DIR="${PYENV_DIR:-$HOME/.pyenv}"

# Prints the real path of a CPython X.Y that can create venvs with pip, or fails.
# pyenv's own builds come first (highest patch); PATH entries may be pyenv shims,
# which only work for the selected version, so every candidate is run and checked.
find_python() {
  local ver=$1 dir cand
  local -a cands=()
  if [ -d "$PYENV_DIR/versions" ]; then
    while IFS= read -r dir; do
      cands+=("$dir/bin/python$ver")
    done < <(find "$PYENV_DIR/versions" -mindepth 1 -maxdepth 1 -name "$ver.*" 2>/dev/null \
      | grep -E "/${ver//./\\.}\.[0-9]+$" | sort -V -r)
  fi
  cands+=("/usr/local/bin/python$ver" "/usr/bin/python$ver")
  if cand=$(command -v "python$ver" 2>/dev/null); then cands+=("$cand"); fi
  for cand in "${cands[@]}"; do
    [ -x "$cand" ] || continue
    "$cand" - "$ver" 2>/dev/null <<'PY' && return 0
import sys
ok = sys.implementation.name == "cpython" and "%d.%d" % sys.version_info[:2] == sys.argv[1]
if ok:
    import ensurepip, venv  # noqa: F401  (Debian ships these separately: pythonX.Y-venv)
    print(sys.executable)
sys.exit(0 if ok else 1)
PY
  done
  return 1
}

# A Debian python3.X without its -venv package cannot make venvs; install it when we
# may (root with apt-get), then look again.
find_python_or_install_venv() {
  local ver=$1
  find_python "$ver" && return 0
  if [ -x "/usr/bin/python$ver" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "django.sh: /usr/bin/python$ver lacks venv; apt-get install python$ver-venv" >&2
    apt-get install -y -q "python$ver-venv" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "python$ver-venv" >/dev/null 2>&1; } \
      || true
    find_python "$ver" && return 0
  fi
  return 1
}

count() {  # count WORD SUMMARY -> the number before WORD in pytest's summary, or 0
  local n
  n=$(grep -oE "[0-9]+ $1" <<<"$2" | head -n1 | grep -oE '^[0-9]+')
  echo "${n:-0}"
}

SUMMARY=()
FAILED_LINES=0
TOTAL_PASSED=0 TOTAL_FAILED=0 TOTAL_SKIPPED=0
START=$SECONDS

for entry in "${MATRIX[@]}"; do
  IFS='|' read -r line spec pythons <<<"$entry"
  if [ -n "${SMTPSEC_DJANGO_ONLY:-}" ] && [[ " ${SMTPSEC_DJANGO_ONLY//,/ } " != *" $line "* ]]; then
    continue
  fi
  t0=$SECONDS
  echo "==> django $line ($spec)"

  py="" pyver=""
  for v in $pythons; do
    if py=$(find_python_or_install_venv "$v"); then pyver=$v; break; fi
  done
  if [ -z "$pyver" ]; then
    wanted=${pythons// / or }
    {
      echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
      echo "!!! django $line: NO SUITABLE PYTHON. It needs CPython $wanted with venv;"
      echo "!!! none in $PYENV_DIR/versions, /usr/local/bin, /usr/bin or on PATH."
      echo "!!! Install one: pyenv install ${pythons%% *}, or apt-get install python${pythons%% *} python${pythons%% *}-venv"
      echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    } >&2
    SUMMARY+=("django $line: NOT RUN, no suitable Python (needs CPython $wanted)")
    [ "${SMTPSEC_DJANGO_ALLOW_MISSING:-0}" = 1 ] || FAILED_LINES=$((FAILED_LINES + 1))
    continue
  fi

  venv="$VENVS/django-$line"
  log="$VENVS/django-$line.log"
  if [ -x "$venv/bin/python" ] \
    && [ "$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$pyver" ]; then
    echo "    reusing $venv (Python $pyver)"
  else
    echo "    creating $venv with $py"
    rm -rf "$venv"
    if ! "$py" -m venv "$venv" >"$log" 2>&1; then
      cat "$log" >&2
      SUMMARY+=("django $line on $pyver: NOT RUN, could not create a venv with $py (see $log)")
      FAILED_LINES=$((FAILED_LINES + 1))
      continue
    fi
  fi

  # One resolver run: the repository with its test extras, Django held to the line.
  # --upgrade fetches the line's newest patch release into a reused venv too.
  echo "    pip install -e '.[test]' '$spec'"
  if ! "$venv/bin/python" -m pip install --quiet --upgrade --upgrade-strategy only-if-needed \
    -e ".[test]" "$spec" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    SUMMARY+=("django $line on $pyver: NOT RUN, pip install failed (see $log)")
    FAILED_LINES=$((FAILED_LINES + 1))
    continue
  fi
  if ! dj=$("$venv/bin/python" - "$ROOT/src" "$line" 2>>"$log" <<'PY'
import pathlib, sys
import django, smtpsec
src, line = pathlib.Path(sys.argv[1]).resolve(), sys.argv[2]
here = pathlib.Path(smtpsec.__file__).resolve()
if src not in here.parents:
    sys.exit(f"smtpsec is imported from {here}, not from {src}")
if ".".join(map(str, django.VERSION[:2])) != line:
    sys.exit(f"django {django.get_version()} installed, not {line}")
print(django.get_version())
PY
  ); then
    tail -n 5 "$log" >&2
    SUMMARY+=("django $line on $pyver: NOT RUN, wrong installation (see $log)")
    FAILED_LINES=$((FAILED_LINES + 1))
    continue
  fi

  echo "    pytest tests/integrations (django $dj on $pyver)"
  "$venv/bin/python" -m pytest tests/integrations -q -p no:cacheprovider >"$log" 2>&1
  rc=$?
  summary=$(grep -E '^=*[[:space:]]*[0-9]+ (passed|failed|skipped|errors?|deselected)' "$log" | tail -n1)
  passed=$(count passed "$summary")
  failed=$(count failed "$summary")
  skipped=$(count skipped "$summary")
  errors=$(count 'errors?' "$summary")
  text="django $dj on $pyver: $passed passed, $failed failed, $skipped skipped"
  case $errors in 0) ;; 1) text+=", 1 error" ;; *) text+=", $errors errors" ;; esac
  if [ "$rc" != 0 ]; then
    if [ -z "$summary" ]; then
      text="django $dj on $pyver: CRASHED, pytest exited $rc without a summary"
    fi
    text+=" (pytest exit $rc; log: $log)"
    FAILED_LINES=$((FAILED_LINES + 1))
    echo "---- django $dj: failures (full log: $log)" >&2
    grep -E '^_{3,} .* _{3,}$|^E   ' "$log" | head -n 40 >&2
    if grep -q 'short test summary info' "$log"; then
      sed -n '/short test summary info/,$p' "$log" | grep -v '^SKIPPED' >&2
    else
      tail -n 40 "$log" >&2
    fi
    echo "----" >&2
  fi
  echo "    done in $((SECONDS - t0)) s"
  SUMMARY+=("$text")
  TOTAL_PASSED=$((TOTAL_PASSED + passed))
  TOTAL_FAILED=$((TOTAL_FAILED + failed + errors))
  TOTAL_SKIPPED=$((TOTAL_SKIPPED + skipped))
done

echo
echo "Django matrix ($((SECONDS - START)) s):"
for s in "${SUMMARY[@]}"; do echo "$s"; done
echo "django: $TOTAL_PASSED passed, $TOTAL_FAILED failed, $TOTAL_SKIPPED skipped"
if [ -n "${SMTPSEC_DJANGO_SUMMARY:-}" ]; then
  { for s in "${SUMMARY[@]}"; do echo "$s"; done; } >"$SMTPSEC_DJANGO_SUMMARY"
fi
if [ "${#SUMMARY[@]}" = 0 ]; then
  echo "django.sh: no Django line selected (SMTPSEC_DJANGO_ONLY=${SMTPSEC_DJANGO_ONLY:-})" >&2
  exit 2
fi
if [ "$FAILED_LINES" != 0 ]; then
  echo "django.sh: $FAILED_LINES Django line(s) failed or did not run" >&2
  exit 1
fi
