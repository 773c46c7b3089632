# Sourced by scripts/demo and scripts/test: make ./.venv hold this project and what it needs.
# Reinstalls only when pyproject.toml changed (a stamp file remembers its hash).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

ensure_venv() {
  local extras="$1" stamp want
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PY" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        echo "== installing python3-venv (Debian)" >&2
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
        "$PY" -m venv "$VENV"
      else
        echo "error: '$PY -m venv' failed; install your distribution's venv package (Debian: python3-venv)" >&2
        exit 1
      fi
    fi
  fi
  stamp="$VENV/.stamp-$extras"
  want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "== installing engine-hub[$extras] into .venv" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[$extras]" >&2
    echo "$want" > "$stamp"
  fi
}
