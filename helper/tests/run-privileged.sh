#!/usr/bin/env bash
# Runs the helper's test binaries against a *privileged* helper on a simulated hardened host:
# `hardened-host` (helper/examples/hardened-host.rs) makes a user namespace in which no user
# namespace may be created (user.max_user_namespaces = 0 there), the helper gets its file
# capabilities there (namespaced: they count nowhere else on this machine), and the tests run
# as an unprivileged uid inside, as the privileged helper's hostile caller. Fixtures that
# caller must not reach (another user's store, root-only files, a set-user-ID copy of the
# helper) are made first. Run as root.
#
# usage: helper/tests/run-privileged.sh   (builds the test binaries first, like run-as-user.sh)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
base=300000                   # host ids of the simulated host: 0..65535 there
caller=1001                   # the caller's uid and gid there
other=1002                    # another user there
out=$(mktemp -d /tmp/kp-privileged-XXXXXX)
trap 'rm -rf "$out"' EXIT

[ "$(id -u)" = 0 ] || { echo "run-privileged.sh: run me as root" >&2; exit 1; }
cd "$repo"
bins=$(cargo test -p karapace-helper --no-run 2>&1 | sed -n 's/^ *Executable tests\/[^ ]* (\(.*\))$/\1/p')
[ -n "$bins" ] || { echo "run-privileged.sh: no test executables found" >&2; exit 1; }
cargo build -p karapace-helper --bins --examples --quiet
mkdir -p "$out/bin/examples" "$out/home"
cp "$target/debug/karapace-helper" "$out/bin/"
cp "$target/debug/karapace-helper" "$out/bin/karapace-helper-setuid"
cp "$target/debug/examples/probe" "$target/debug/examples/kp-run" "$out/bin/examples/"
for b in $bins; do case "$b" in /*) cp "$b" "$out/bin/";; *) cp "$repo/$b" "$out/bin/";; esac; done
chmod -R a+rX "$out"
chmod 755 "$out"
# The simulated host's root owns what it installs; the caller owns its home.
chown -R "$base:$base" "$out"
chown "$((base + caller)):$((base + caller))" "$out/home"
# The tests' temporary files: a /tmp of the simulated host's, removed with the rest (a store
# the caller cannot empty alone must not stay behind in the machine's /tmp).
mkdir -p "$out/tmp"
chown "$base:$base" "$out/tmp"
chmod 1777 "$out/tmp"

fix="$out/fixtures"
# A device node the caller may open on this machine (c 1,3, /dev/null's numbers, mode 0666), in
# a directory of the caller's: made here by the machine's root, as a file system the caller
# mounted (FUSE, a disk image) could hold one; inside an environment it must not open.
mkdir -p "$fix/devstore/layers/dev"
mknod -m 0666 "$fix/devstore/layers/dev/nulldev" c 1 3
chown "$base:$base" "$fix"
chown -R "$((base + caller)):$((base + caller))" "$fix/devstore"
chown "$base:$base" "$fix/devstore/layers/dev/nulldev"
# Everything below is made by the simulated host's root, inside it.
prepare="
set -e
setcap $("$target/debug/karapace-helper" --file-capabilities) $out/bin/karapace-helper
chmod 4755 $out/bin/karapace-helper-setuid
mkdir -p $fix/foreign/layers/base $fix/secret/closed $fix/secret/open/search-only $fix/secret/open/public
chown -R $other:$other $fix/foreign
echo root-only > $fix/secret/closed/file
echo root-only > $fix/secret/open/private-file
echo anyone > $fix/secret/open/public/readable
chmod 755 $fix $fix/secret $fix/secret/open $fix/secret/open/public
chmod 700 $fix/secret/closed
chmod 600 $fix/secret/open/private-file
chmod 711 $fix/secret/open/search-only
chmod 644 $fix/secret/open/public/readable
mkdir -p $fix/mixed/layer/secret $fix/mixed/top/secret $fix/mixed/locked $fix/mixed/lockedwork/inner $fix/mixed/work $fix/mixed/upper
echo TOPSECRET > $fix/mixed/layer/secret/key
echo keep > $fix/mixed/lockedwork/inner/file
chown $caller:$caller $fix/mixed $fix/mixed/layer $fix/mixed/work $fix/mixed/upper
chown -R $caller:$caller $fix/mixed/top
chmod 700 $fix/mixed/layer/secret $fix/mixed/lockedwork
"
status=0
for b in $bins; do
  name=$(basename "$b")
  echo "== $name against the privileged helper (simulated host without user namespaces)"
  "$target/debug/examples/hardened-host" --uid-base "$base" -- sh -c "$prepare
    exec setpriv --reuid=$caller --regid=$caller --clear-groups -- env -i PATH=/usr/bin:/bin \
      HOME=$out/home TMPDIR=$out/tmp KARAPACE_HELPER=$out/bin/karapace-helper \
      KARAPACE_PROBE_DIR=$out/bin/examples KARAPACE_TEST_FOREIGN_STORE=$fix/foreign \
      KARAPACE_TEST_UNREADABLE=$fix/secret KARAPACE_TEST_SETUID_HELPER=$out/bin/karapace-helper-setuid \
      KARAPACE_TEST_MIXED_STORE=$fix/mixed KARAPACE_TEST_DEVICE_STORE=$fix/devstore \
      $out/bin/$name --test-threads=2" || status=1
done
exit $status
