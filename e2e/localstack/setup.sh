#!/usr/bin/env bash
# Creates the LocalStack virtualenv: $LOCALSTACK_VENV, by default e2e/localstack/.venv, with a
# Python 3.13 (python3.13 on PATH, else pyenv's newest 3.13). Idempotent: a venv that already
# holds the pinned versions is left alone; pip's cache makes a rebuild quick.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${LOCALSTACK_VENV:-$here/.venv}
stamp=$venv/.requirements
if [ -x "$venv/bin/python" ] && cmp -s "$here/requirements.txt" "$stamp"; then
  exit 0
fi
python=""
# (pyenv's shim answers to python3.13 on PATH even when that version is not selected.)
if python3.13 -c '' 2>/dev/null; then
  python=$(command -v python3.13)
elif command -v pyenv >/dev/null; then
  version=$(pyenv versions --bare | grep -E '^3\.13(\.|$)' | sort -V | tail -n 1 || true)
  [ -z "$version" ] || python="$(pyenv root)/versions/$version/bin/python3.13"
fi
if [ -z "$python" ] || [ ! -x "$python" ]; then
  echo "LocalStack needs Python 3.13 (python3.13 on PATH, or pyenv with a 3.13): none found" >&2
  exit 1
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
cp "$here/requirements.txt" "$stamp"
