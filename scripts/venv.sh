# Sourced by scripts/run.sh and scripts/test.sh (not run on its own): the project's virtual environment.
#
#   ensure_venv EXTRA...   creates .venv/ with `python3 -m venv` when it is missing or broken, installs the
#                          project into it (pip install -e ".[EXTRA,...]"), puts .venv/bin first on PATH and
#                          exports VIRTUAL_ENV. Extras that pyproject.toml does not define are left out.
#
# Nothing is ever installed into the system's Python: on Debian it is externally managed (PEP 668), and a
# global install would mix the broker's pins with the system's. Only `python3` (3.11 or later) is needed;
# BROKER_PYTHON names another interpreter, BROKER_VENV another folder for the environment.
#
# Re-running is quick: .venv/.installed holds the SHA-256 of pyproject.toml and the extras installed with
# it, and pip runs only when pyproject.toml changed or an extra is missing. The project is installed
# editable, so a change to the code needs no reinstall.

BROKER_VENV=${BROKER_VENV:-$PWD/.venv}

_venv_die() {
  echo "$*" >&2
  exit 2
}

# Installs a Debian package as test.sh installs redis-server (root, or sudo).
_venv_apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing $* from Debian's packages" >&2
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

_venv_base_python() {
  local python=${BROKER_PYTHON:-python3}
  command -v "$python" >/dev/null 2>&1 || _venv_die "$python not found: the broker needs Python 3.11 or later"
  "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    _venv_die "$python is $("$python" -c 'import sys; print(sys.version.split()[0])'); the broker needs 3.11+"
  # Debian's python3 ships venv without ensurepip; the venv package of the same minor version adds it.
  if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    local minor
    minor=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    _venv_apt_install "python$minor-venv" || _venv_apt_install python3-venv ||
      _venv_die "$python cannot create virtual environments: install python$minor-venv (Debian) and retry"
  fi
  echo "$python"
}

_venv_create() {
  if [ -x "$BROKER_VENV/bin/python" ] && "$BROKER_VENV/bin/python" -c 'import pip' 2>/dev/null; then
    return
  fi
  local python
  python=$(_venv_base_python)
  echo "creating the virtual environment ${BROKER_VENV#"$PWD"/}" >&2
  rm -rf "$BROKER_VENV"
  if ! "$python" -m venv "$BROKER_VENV"; then
    rm -rf "$BROKER_VENV"
    _venv_die "$python -m venv $BROKER_VENV failed"
  fi
}

# Prints "current" when the stamp covers the wanted extras, else "DIGEST EXTRA..." to install and stamp.
_venv_plan() {
  "$BROKER_VENV/bin/python" - "$BROKER_VENV/.installed" "$@" <<'PY'
import hashlib
import sys
import tomllib
from pathlib import Path

stamp, wanted = Path(sys.argv[1]), sys.argv[2:]
data = Path("pyproject.toml").read_bytes()
defined = tomllib.loads(data.decode())["project"].get("optional-dependencies", {})
digest = hashlib.sha256(data).hexdigest()
old = stamp.read_text().split() if stamp.exists() else []
wanted = {extra for extra in wanted if extra in defined}
if old[:1] == [digest] and wanted <= set(old[1:]):
    print("current")
else:
    # Keep what an earlier run installed (test.sh's dev extras stay when run.sh installs its own).
    print(digest, *sorted(wanted | {extra for extra in old[1:] if extra in defined}))
PY
}

ensure_venv() {
  # One setup at a time per checkout: engineers and CI may start run.sh and test.sh together. The lock is
  # the project folder itself, released before the caller execs its command.
  if command -v flock >/dev/null 2>&1; then
    exec 8<.
    flock 8
  fi
  _venv_create
  local plan digest extras spec
  plan=$(_venv_plan "$@")
  if [ "$plan" != current ]; then
    read -r digest extras <<<"$plan"
    spec=.
    [ -z "$extras" ] || spec=".[${extras// /,}]"
    echo "installing $spec into ${BROKER_VENV#"$PWD"/}" >&2
    "$BROKER_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec"
    echo "$plan" >"$BROKER_VENV/.installed"
  fi
  if command -v flock >/dev/null 2>&1; then
    exec 8<&-
  fi
  export VIRTUAL_ENV=$BROKER_VENV
  export PATH=$BROKER_VENV/bin:$PATH
  unset PYTHONHOME
}
