#!/usr/bin/env bash
# Builds the helper's namespace test binaries (as the current user, usually
# root in CI), copies them to a world-readable directory and runs them as an
# unprivileged user, so the escape and hostile-request tests also run rootless.
#
# usage: helper/tests/run-as-user.sh [USER]   (default user: kptest, created if missing)
set -euo pipefail
user="${1:-kptest}"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="${KP_TEST_DIR:-/tmp/kp-tests}"
target="${CARGO_TARGET_DIR:-$repo/target}"

id "$user" >/dev/null 2>&1 || useradd -m "$user"
cd "$repo"
# `cargo test --no-run` names each integration-test executable it built.
bins=$(cargo test -p karapace-helper --no-run 2>&1 | sed -n 's/^ *Executable tests\/[^ ]* (\(.*\))$/\1/p')
[ -n "$bins" ] || { echo "run-as-user.sh: no test executables found" >&2; exit 1; }
rm -rf "$out"; mkdir -p "$out/examples"
cp "$target/debug/karapace-helper" "$out/"
cp "$target/debug/examples/probe" "$target/debug/examples/kp-run" "$out/examples/"
for b in $bins; do case "$b" in /*) cp "$b" "$out/";; *) cp "$repo/$b" "$out/";; esac; done
chmod -R a+rX "$out"

status=0
for b in $bins; do
  name=$(basename "$b")
  echo "== $name as $user"
  runuser -u "$user" -- env -i PATH=/usr/bin:/bin HOME="$(getent passwd "$user" | cut -d: -f6)" \
    KARAPACE_HELPER="$out/karapace-helper" KARAPACE_PROBE_DIR="$out/examples" TMPDIR=/tmp \
    "$out/$name" --test-threads=2 || status=1
done
exit $status
