#!/usr/bin/env bash
# Creates (or reuses) the trainer's Python virtual environment and prints its path on stdout.
# The venv lives outside the clone, keyed by the requirements lock, so a warm run installs nothing:
#   ${TICCLIP_CACHE:-$HOME/.cache/continual-clip-operator}/venv-<sha256 of requirements.txt, 12 chars>
# pip's cache stays at its default (~/.cache/pip). The trainer package is put on the path with a
# .pth file pointing at trainer-image/src (an editable install without a build step).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
req="$root/trainer-image/requirements.txt"
python="${PYTHON:-python3}"
cache="${TICCLIP_CACHE:-$HOME/.cache/continual-clip-operator}"
hash="$(sha256sum "$req" | cut -c1-12)"
venv="$cache/venv-$hash"
stamp="$venv/.ticclip-installed"

# Clones on one machine share the venv: one creator at a time, or a second would delete the venv
# the first is installing into.
mkdir -p "$cache"
exec 9>"$cache/venv.lock"
flock 9
if [[ ! -f "$stamp" ]]; then
  echo "python-venv: creating $venv" >&2
  mkdir -p "$cache"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip==25.2" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req" >&2
  touch "$stamp"
fi
# Development tools (ruff) go into the same venv under their own stamp, keyed by their lock.
dev_req="$root/trainer-image/requirements-dev.txt"
dev_stamp="$venv/.ticclip-dev-$(sha256sum "$dev_req" | cut -c1-12)"
if [[ ! -f "$dev_stamp" ]]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$dev_req" >&2
  touch "$dev_stamp"
fi
# (Re)point the package at this clone: cheap, and right when several clones share one venv.
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$root/trainer-image/src" > "$site/ticclip_trainer_src.pth"
echo "$venv"
