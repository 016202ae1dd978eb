#!/usr/bin/env bash
# Creates the virtualenv with the pinned moto server: $MOTO_VENV, by default e2e/moto/.venv.
# Idempotent: a venv that already holds the pinned versions is left alone. pip's own cache
# (~/.cache/pip) makes a rebuild quick.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${MOTO_VENV:-$here/.venv}
stamp=$venv/.requirements
if [ -x "$venv/bin/python" ] && cmp -s "$here/requirements.txt" "$stamp"; then
  exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
cp "$here/requirements.txt" "$stamp"
