# Sourced by ops/demo and ops/test: create .venv beside the repo on first use and keep it
# in step with pyproject.toml. Needs only python3 (3.11+).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
py="${PYTHON:-python3}"
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "imagen-actors needs Python 3.11 or newer")'
stamp="$venv/.installed-$1"
if [ ! -x "$venv/bin/python" ]; then
  echo "imagen-actors: creating $venv (first run only)" >&2
  "$py" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ]; then
  echo "imagen-actors: installing the package and its dependencies into .venv" \
    "(first run, or pyproject.toml changed: about a minute)" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet -e "$repo$2" >&2
  touch "$stamp"
  echo "imagen-actors: .venv is ready" >&2
fi
