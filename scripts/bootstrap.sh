# Sourced by scripts/demo and scripts/test: make ./.venv hold this project and what it needs.
# `ensure_venv runtime` installs the hub's own dependencies (the demo needs nothing else);
# `ensure_venv test` adds the pinned toolchain. Every version comes from constraints.txt, so a
# new release of anything cannot change a fresh clone. Reinstalls only when pyproject.toml or
# constraints.txt changed (a stamp file per extra remembers their hash).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

# pip for the venv: the interpreter's own pip driving it (`--python`, pip >= 22.3) saves the ~4 s
# that seeding every new venv with its own pip costs; without one, the venv gets its own.
venv_pip() {
  if [ -x "$VENV/bin/pip" ]; then
    "$VENV/bin/python" -m pip "$@"
  elif "$PY" -m pip --python "$VENV/bin/python" --version >/dev/null 2>&1; then
    "$PY" -m pip --python "$VENV/bin/python" "$@"
  else
    "$VENV/bin/python" -m ensurepip -q >&2 && "$VENV/bin/python" -m pip "$@"
  fi
}

ensure_venv() {
  local extras="$1" stamp want target
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PY" -m venv --without-pip "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "== installing python3-venv (Debian)" >&2
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        "$PY" -m venv --without-pip "$VENV"
      else
        echo "error: '$PY -m venv' failed; install your distribution's venv package (Debian: python3-venv)" >&2
        exit 1
      fi
    fi
  fi
  stamp="$VENV/.stamp-$extras"
  want="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    target="$ROOT"
    [ "$extras" = runtime ] || target="$ROOT[$extras]"
    echo "== installing engine-hub ($extras dependencies, pinned by constraints.txt) into .venv" >&2
    venv_pip install -q --disable-pip-version-check -c "$ROOT/constraints.txt" -e "$target" >&2
    echo "$want" > "$stamp"
  fi
}
