#!/usr/bin/env bash
# Root-side half of test_grant_postgres_access.py, whose checks run as the postgres user: clones
# this repository (its committed HEAD) twice into a private, mode-700 folder, as a user would
# into a home folder, breaks the second clone the way setup.sh did before 0.2.1, and runs this
# working tree's scripts/grant_postgres_access.sh on both. Prints the folder that holds the
# clones and each step's output (NAME.log) and exit status (NAME.rc); the caller removes it.
# Never fails itself: the test reads the logs and reports what went wrong.
# Usage (as root): private_clones.sh VENV
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
venv=$1
grant=$src/scripts/grant_postgres_access.sh
top=$(mktemp -d) || exit 1
chmod 755 "$top"
home=$top/home
mkdir -m 700 "$home"

step() { local name=$1; shift; "$@" >"$top/$name.log" 2>&1; echo $? >"$top/$name.rc"; }
# git refuses to clone a repository that another user owns (a CI checkout, say) without this.
printf '[safe]\n\tdirectory = *\n' >"$top/gitconfig"
clone() { GIT_CONFIG_GLOBAL=$top/gitconfig git clone -q "$src" "$1"; }

step fresh.clone clone "$home/fresh"
step fresh bash "$grant" "$home/fresh" "$venv"
step fresh.again bash "$grant" "$home/fresh" "$venv"

step broken.clone clone "$home/broken"
# What the step did before 0.2.1, walking up from the checkout: x for postgres on both.
setfacl -m u:postgres:x "$home/broken" "$home"
step broken.before runuser -u postgres -- ls "$home/broken"
step broken bash "$grant" "$home/broken" "$venv"
echo "$top"
