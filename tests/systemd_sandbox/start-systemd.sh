#!/bin/bash
# Start a REAL systemd 252 (/usr/lib/systemd/systemd --system) as PID 1 of private
# pid/mount/uts/ipc/net/cgroup namespaces. Prints the host pid of that PID 1.
# Confinement: everything it mounts is in its private mount namespace (propagation private);
# it sees a cgroup2 hierarchy rooted at /sys/fs/cgroup/unified/sdbox (cgroup namespace), a
# private /run, a private /var/lib and /opt (folders of STATE_DIR), a minimal unit set (no host units, no
# generators) and its own network namespace (loopback only).
# Usage: start-systemd.sh STATE_DIR UNIT_DIR
# UNIT_DIR is mounted as /etc/systemd/system (the units to test, with their drop-ins);
# STATE_DIR/opt as /opt, STATE_DIR/varlib as /var/lib; systemd's log is STATE_DIR/systemd.log.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 STATE_DIR UNIT_DIR" >&2; exit 2; }
H=$(cd "$(dirname "$0")" && pwd)
ST=$(mkdir -p "$1" && cd "$1" && pwd)
UD=$(cd "$2" && pwd)
# the cgroup2 hierarchy: /sys/fs/cgroup/unified here (hybrid host), or /sys/fs/cgroup (unified host)
if [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then CGBASE=/sys/fs/cgroup/unified
elif [ "$(stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ]; then CGBASE=/sys/fs/cgroup
else echo "no cgroup2 hierarchy found" >&2; exit 1; fi
CGHOST=$CGBASE/sdbox.$$
[ -e "$ST/pid1" ] && kill -0 "$(cat "$ST/pid1")" 2>/dev/null && { echo "already running: $(cat "$ST/pid1")" >&2; exit 1; }
mkdir -p "$ST" "$ST/varlib" "$ST/opt" "$ST/empty" "$ST/sysunits"
# minimal system unit set: the standard targets (no .wants), plus sdbox.target as default
for u in basic.target sysinit.target sockets.target multi-user.target network.target \
         network-online.target network-pre.target shutdown.target paths.target timers.target \
         slices.target local-fs.target local-fs-pre.target swap.target umount.target final.target \
         exit.target systemd-exit.service poweroff.target systemd-poweroff.service \
         halt.target systemd-halt.service reboot.target systemd-reboot.service; do
  cp /usr/lib/systemd/system/$u "$ST/sysunits/"
done
printf '[Unit]\nDescription=sdbox minimal default target\nAllowIsolate=yes\n' > "$ST/sysunits/sdbox.target"
rm -f "$ST/pid1" "$ST/unshare.pid" "$ST/ptylog.pid"
mkdir -p "$CGHOST"; echo "$CGHOST" > "$ST/cgroup"
t0=$(date +%s.%N)
# inner: runs as PID 1 of the new namespaces, sets up mounts, then execs systemd (stays PID 1)
cat > "$ST/inner.sh" <<INNER
#!/bin/bash
set -e
mount --make-rprivate /
mount -t cgroup2 cgroup2 /sys/fs/cgroup            # unified hierarchy, root = our cgroup ns
mount -t tmpfs -o mode=755 tmpfs /run
# systemd as a container's PID 1 logs to /dev/console: a pty of ptylog.py, copied to systemd.log
mount --bind "\$SDBOX_CONSOLE" /dev/console
mount --bind "$ST/varlib" /var/lib                 # StateDirectory= etc. land in \$ST/varlib
mount --bind "$ST/opt" /opt
mount --bind "$ST/sysunits" /usr/lib/systemd/system  # minimal unit set
mount --bind "$UD" /etc/systemd/system      # the units under test (+ drop-ins)
for g in /usr/lib/systemd/system-generators /usr/lib/systemd/system-environment-generators; do
  mount --bind "$ST/empty" \$g
done
[ -d /etc/systemd/system-generators ] && mount --bind "$ST/empty" /etc/systemd/system-generators
exec env -i container=unshare PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
  /usr/lib/systemd/systemd --system --unit=sdbox.target --log-target=console \
  --log-level=\${SD_LOG_LEVEL:-debug} --show-status=no
INNER
chmod +x "$ST/inner.sh"
# the launcher moves itself into the cgroup first, so the cgroup namespace is rooted there
setsid "$H/ptylog.py" "$ST/systemd.log" "$ST/unshare.pid" bash -c "echo \$\$ > $CGHOST/cgroup.procs; exec unshare --cgroup --pid --mount --uts --ipc --net --fork --kill-child --mount-proc --propagation private $ST/inner.sh" \
  </dev/null >/dev/null 2>&1 &
echo $! > "$ST/ptylog.pid"
for i in $(seq 1 100); do [ -s "$ST/unshare.pid" ] && break; sleep 0.02; done
# find the namespace's PID 1 (child of unshare)
for i in $(seq 1 200); do
  c=$(cat /proc/$(cat "$ST/unshare.pid")/task/*/children 2>/dev/null | tr -s ' ' '\n' | head -1 || true)
  [ -n "$c" ] && break; sleep 0.02
done
[ -n "$c" ] || { echo "no PID 1 found" >&2; exit 1; }
echo "$c" > "$ST/pid1"
# move unshare itself back out of the namespace's cgroup root (its children stay)
echo "$(cat "$ST/unshare.pid")" > "$CGBASE/cgroup.procs" || true
# wait until systemd answers and the start-up jobs are done
for i in $(seq 1 500); do
  st=$(nsenter -t "$c" -m -p -n systemctl is-system-running 2>/dev/null || true)
  case "$st" in running|degraded) break;; esac
  sleep 0.05
done
t1=$(date +%s.%N)
echo "systemd PID1 host pid $c; state: $st; started in $(awk "BEGIN { print $t1 - $t0 }") s" >&2
echo "$c"
