#!/usr/bin/env bash
# The shipped systemd user unit and D-Bus activation file, for real: a user manager
# (`systemd --user`) of the test user, whose bus (dbus-user-session) activates
# org.karapace.Manager1 through `SystemdService=karapace-dbus.service`, the unit exactly as
# shipped except for the binary's path. Through it: build a Debian environment that needs the
# user's subordinate ids (apt's own users), check the unit's settings are in force in the
# service, run a program in the environment, destroy it. Then the confined drop-in: the service
# starts under it with every option in force, and a build that needs subordinate ids fails with
# the helper's reason, as docs/dbus.md says.
#
# Run as root after the workspace is built (scripts/test-all). Needs KARAPACE_TEST_MIRROR,
# the test user kptest with a subordinate range, and Debian's systemd and dbus-user-session.
# This machine's init is not systemd: in a mount namespace of its own the script gives the user
# manager what PID 1 and logind would, and a delegated cgroup it removes at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
# No argument: the test user with a subordinate range, under the shipped unit, then the confined
# drop-in's refusal. `--no-range`: a user without one, under the confined drop-in from the start.
case "${1:-}" in
  "") MODE=range; USER_NAME=${KARAPACE_TEST_USER:-kptest} ;;
  --no-range) MODE=no-range; USER_NAME=${KARAPACE_TEST_USER:-kpnorange} ;;
  *) echo "usage: run-under-systemd.sh [--no-range]" >&2; exit 2 ;;
esac
: "${KARAPACE_TEST_MIRROR:?KARAPACE_TEST_MIRROR must name the local image mirror (scripts/test-image)}"
[ "$(id -u)" -eq 0 ] || { echo "run-under-systemd: run as root" >&2; exit 1; }
for tool in /lib/systemd/systemd systemctl busctl setpriv; do
  command -v "$tool" >/dev/null || { echo "run-under-systemd: $tool missing (scripts/install-deps)" >&2; exit 1; }
done
[ -e /usr/lib/systemd/user/dbus.socket ] || { echo "run-under-systemd: dbus-user-session missing (scripts/install-deps)" >&2; exit 1; }
for b in karapace karapace-cli karapace-dbus karapace-helper; do
  [ -x "$BIN/$b" ] || { echo "run-under-systemd: $BIN/$b not built" >&2; exit 1; }
done
if grep -q "^$USER_NAME:" /etc/subuid; then has_range=range; else has_range=no-range; fi
[ "$has_range" = "$MODE" ] || { echo "run-under-systemd: $USER_NAME: wanted a user with $MODE" >&2; exit 1; }

# A mount namespace of the test's own, where /run is what a systemd host has: a tmpfs, with the
# marks PID 1 leaves (a booted-with-systemd host, the directory a user manager mounts a confined
# unit's view on) and the user's runtime directory as logind mounts it. Nothing of that reaches
# the machine, and it all goes when the test ends.
if [ -z "${KARAPACE_UNIT_TEST_NS:-}" ]; then
  exec env KARAPACE_UNIT_TEST_NS=1 unshare --mount --propagation private "$0" "$@"
fi
# Never mount over the machine's own /run, whatever the environment says.
[ "$(readlink /proc/self/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" ] \
  || { echo "run-under-systemd: not in a mount namespace of its own" >&2; exit 1; }
uid=$(id -u "$USER_NAME"); gid=$(id -g "$USER_NAME"); home=$(getent passwd "$USER_NAME" | cut -d: -f6)
runtime=/run/user/$uid
work=$home/karapace-unit-test
manager_pid=
cgroups=()

cleanup() {
  set +e
  if [ -n "$manager_pid" ]; then
    as_user systemctl --user stop karapace-dbus.service >/dev/null 2>&1
    kill -TERM "$manager_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$manager_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$manager_pid" 2>/dev/null
  fi
  # Whatever the manager left anywhere in its cgroup trees (a service it had no time to stop),
  # until they are empty; then the trees go.
  for _ in $(seq 50); do
    left=$(for cg in "${cgroups[@]}"; do find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null; done)
    [ -z "$left" ] && break
    for pid in $left; do kill -KILL "$pid" 2>/dev/null; done
    sleep 0.1
  done
  for cg in "${cgroups[@]}"; do
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
    [ -d "$cg" ] && echo "run-under-systemd: could not remove $cg" >&2
  done
  rm -rf "$work" "$home/.config/systemd/user/karapace-dbus.service" \
    "$home/.config/systemd/user/karapace-dbus.service.d" \
    "$home/.local/share/dbus-1/services/org.karapace.Manager1.service"
}
trap cleanup EXIT

as_user() {
  setpriv --reuid="$uid" --regid="$gid" --init-groups \
    env -i HOME="$home" USER="$USER_NAME" LOGNAME="$USER_NAME" XDG_RUNTIME_DIR="$runtime" \
    DBUS_SESSION_BUS_ADDRESS="unix:path=$runtime/bus" PATH=/usr/local/bin:/usr/bin:/bin \
    KARAPACE_IMAGE_SERVER="file://$KARAPACE_TEST_MIRROR" "$@"
}
fail() {
  echo "run-under-systemd: FAILED: $*" >&2
  [ -n "$manager_pid" ] && as_user systemctl --user status karapace-dbus.service --no-pager >&2
  tail -n 30 "$work/service.log" >&2 2>/dev/null
  exit 1
}

# What PID 1 and logind give a user manager: see above; and a cgroup of its own in every
# hierarchy systemd tracks processes in (v1 name=systemd and the unified one, or pure v2).
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/systemd/system /run/user; mkdir -m 0700 /run/systemd/unit-root
install -d -m 0700 -o "$uid" -g "$gid" "$runtime"
mount -t tmpfs -o "mode=0700,uid=$uid,gid=$gid,size=64m" tmpfs "$runtime"
for hierarchy in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
  case "$(stat -f -c %T "$hierarchy" 2>/dev/null)" in
    cgroupfs|cgroup2fs) ;;
    *) continue ;;
  esac
  cg=$hierarchy/karapace-unit-test-$uid
  mkdir -p "$cg"; chown -R "$uid:$gid" "$cg"; cgroups+=("$cg")
done
[ ${#cgroups[@]} -gt 0 ] || fail "no cgroup hierarchy for the user manager"

# The shipped files, pointed at this build; the test's mirror and store through a drop-in (what
# a user would do with `systemctl --user edit`), which leaves every line of the unit as shipped.
install -d -o "$uid" -g "$gid" "$home/.config" "$home/.config/systemd" "$home/.config/systemd/user" \
  "$home/.config/systemd/user/karapace-dbus.service.d" "$home/.local" "$home/.local/share" \
  "$home/.local/share/dbus-1" "$home/.local/share/dbus-1/services"
sed "s#/usr/bin/karapace-dbus#$work/bin/karapace-dbus#" "$ROOT/core/dbus/data/karapace-dbus.service" \
  > "$home/.config/systemd/user/karapace-dbus.service"
sed "s#/usr/bin/karapace-dbus#$work/bin/karapace-dbus#" "$ROOT/core/dbus/data/org.karapace.Manager1.service" \
  > "$home/.local/share/dbus-1/services/org.karapace.Manager1.service"
cat > "$home/.config/systemd/user/karapace-dbus.service.d/test.conf" <<EOF
[Service]
Environment=KARAPACE_IMAGE_SERVER=file://$KARAPACE_TEST_MIRROR
Environment=KARAPACE_STORE=$work/store
Environment=KARAPACE_LOG=info
StandardError=append:$work/service.log
EOF
chown -R "$uid:$gid" "$home/.config/systemd" "$home/.local/share/dbus-1"
rm -rf "$work"; install -d -o "$uid" -g "$gid" "$work" "$work/env"
cp "$ROOT/examples/debian-curl.toml" "$work/env/karapace.toml"
# Installed where a user would (~/.cargo/bin, say): the confined unit's private /tmp and /var/tmp
# would hide a target directory there. The helper goes beside the service, where it looks.
# Copies, root's (never links: the target directory's binaries stay root's).
chown -R "$uid:$gid" "$work"
install -d -m 0755 "$work/bin"
for b in karapace karapace-cli karapace-dbus karapace-helper; do
  install -m 0755 "$BIN/$b" "$work/bin/$b"
done

echo "== starting systemd --user for $USER_NAME"
(
  for cg in "${cgroups[@]}"; do echo "$BASHPID" > "$cg/cgroup.procs"; done
  exec setpriv --reuid="$uid" --regid="$gid" --init-groups \
    env -i HOME="$home" USER="$USER_NAME" LOGNAME="$USER_NAME" XDG_RUNTIME_DIR="$runtime" \
    PATH=/usr/local/bin:/usr/bin:/bin /lib/systemd/systemd --user
) > "$work/manager.log" 2>&1 &
manager_pid=$!
for _ in $(seq 200); do [ -S "$runtime/bus" ] && break; sleep 0.1; done
[ -S "$runtime/bus" ] || { cat "$work/manager.log" >&2; fail "the user manager's bus socket did not appear"; }
as_user timeout 60 systemctl --user is-system-running --wait >/dev/null 2>&1 || true

confined_dropin() {
  cp "$ROOT/core/dbus/data/karapace-dbus-confined.conf" \
    "$home/.config/systemd/user/karapace-dbus.service.d/confined.conf"
  chown "$uid:$gid" "$home/.config/systemd/user/karapace-dbus.service.d/confined.conf"
  as_user systemctl --user daemon-reload
}

call() {  # method signature args...
  as_user busctl --user --timeout=900 call org.karapace.Manager1 /org/karapace/Manager1 \
    org.karapace.Manager1 "$@" 2>&1
}

# The running service: the unit's (activated through SystemdService=), and its settings in force.
check_service() {  # unit|confined
  [ "$(as_user systemctl --user show -p ActiveState --value karapace-dbus.service)" = active ] \
    || fail "karapace-dbus.service is not the activated service"
  pid=$(as_user systemctl --user show -p MainPID --value karapace-dbus.service)
  [ "$pid" -gt 0 ] || fail "no main pid"
  [ "$(readlink "/proc/$pid/exe")" = "$work/bin/karapace-dbus" ] || fail "the unit's main process is not karapace-dbus"
  local status=/proc/$pid/status
  grep -q '^Max core file size[[:space:]]*0[[:space:]]*0' "/proc/$pid/limits" || fail "LimitCORE=0 not applied"
  [ "$(awk '/^Umask:/ {print $2}' "$status")" = 0077 ] || fail "UMask=0077 not applied"
  if [ "$1" = unit ]; then
    # newuidmap keeps its set-user-ID bit.
    grep -q '^NoNewPrivs:[[:space:]]*0$' "$status" || fail "no_new_privs is set in the service"
    [ "$(readlink "/proc/$pid/ns/user")" = "$(readlink /proc/$$/ns/user)" ] \
      || fail "the unit put the service in a user namespace of its own"
  else
    grep -q '^NoNewPrivs:[[:space:]]*1$' "$status" || fail "no_new_privs not set under the confined drop-in"
    grep -q '^Seccomp:[[:space:]]*2$' "$status" || fail "no seccomp filter under the confined drop-in"
    [ "$(readlink "/proc/$pid/ns/user")" != "$(readlink /proc/$$/ns/user)" ] \
      || fail "the confined service is not in a user namespace of its own"
    [ "$(wc -l < "/proc/$pid/uid_map")" -eq 1 ] && grep -q "^ *$uid  *$uid  *1\$" "/proc/$pid/uid_map" \
      || fail "the confined service's user namespace maps more than the user: $(cat "/proc/$pid/uid_map")"
    # ProtectSystem=strict, seen from inside the service: /etc is read-only there, not here.
    probe=/etc/.karapace-unit-test-$$
    if touch "/proc/$pid/root$probe" 2>/dev/null; then
      rm -f "/proc/$pid/root$probe"; fail "ProtectSystem=strict: /etc is writable in the confined service"
    fi
    touch "$probe" && rm -f "$probe" || fail "/etc is read-only on this machine: the check above proves nothing"
    [ "$(stat -c %d:%i "/proc/$pid/root/tmp")" != "$(stat -c %d:%i /tmp)" ] \
      || fail "PrivateTmp: no /tmp of its own in the confined service"
  fi
  echo "service $pid: settings of the $1 in force"
}

# Build through the service, run in the environment, destroy through the service.
round_trip() {  # unit|confined
  local reply env_id out owner
  reply=$(call BuildEnvironment s "$work/env/karapace.toml") || fail "BuildEnvironment: $reply"
  echo "$reply"
  env_id=$(printf '%s' "$reply" | grep -o '\\"env_id\\":\\"[0-9a-f]*' | grep -o '[0-9a-f]*$')
  [ ${#env_id} -eq 64 ] || fail "no env_id in the reply"
  check_service "$1"
  out=$(as_user "$work/bin/karapace" --store "$work/store" exec "$env_id" -- curl --version) || fail "exec: $out"
  printf '%s\n' "$out" | head -n 1
  printf '%s\n' "$out" | grep -q '^curl ' || fail "curl --version printed no version"
  # apt's own user (_apt) owns its download directory: a subordinate id on the host, or the
  # user when there is no range.
  owner=$(find "$work/store" -path '*/var/cache/apt/archives/partial' -printf '%U\n' 2>/dev/null | sort -u | head -n 1)
  echo "owner of apt's partial directory on the host: ${owner:-none}"
  if [ "$MODE" = range ]; then
    [ -n "$owner" ] && [ "$owner" != "$uid" ] || fail "apt's directory is not a subordinate id's"
  else
    [ "$owner" = "$uid" ] || fail "apt's directory is not the user's"
  fi
  call DestroyEnvironment s "$env_id" >/dev/null || fail "DestroyEnvironment"
  out=$(as_user "$work/bin/karapace" --store "$work/store" list --json) || fail "list: $out"
  printf '%s' "$out" | grep -q "$env_id" && fail "the environment is still listed"
  echo "destroyed $env_id"
}

if [ "$MODE" = range ]; then
  echo "== the shipped unit: build with subordinate ids, exec, destroy"
  round_trip unit
  echo "== the confined drop-in refuses what needs subordinate ids, clearly"
  as_user systemctl --user stop karapace-dbus.service
  confined_dropin
  listed=$(call ListEnvironments) || fail "ListEnvironments under the confined drop-in: $listed"
  check_service confined
  reply=$(call BuildEnvironment s "$work/env/karapace.toml") \
    && fail "a build needing subordinate ids worked under the confined drop-in: $reply"
  printf '%s' "$reply" | grep -q 'newuidmap.*no_new_privs is set' || fail "the refusal does not say why: $reply"
  echo "refused: $reply"
else
  echo "== the confined drop-in, a user without subordinate ids: build, exec, destroy"
  confined_dropin
  round_trip confined
fi
echo "run-under-systemd ($MODE): ok"
