#!/bin/bash
# Tear down what start-systemd.sh started: ask systemd (PID 1 of the namespace) to stop all
# units and exit (`systemctl exit` = orderly; the container's PID 1 exits), then SIGKILL that
# PID 1 if still there (the kernel then kills every process of the pid namespace), wait for
# the unshare parent, and remove the cgroup directories. The mount/net/... namespaces vanish
# with their last process. Only pids recorded by start-systemd.sh are signalled.
# Usage: stop-systemd.sh STATE_DIR
set -u
[ $# -eq 1 ] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
ST=$1
CGHOST=$(cat "$ST/cgroup" 2>/dev/null || true)
p1=$(cat "$ST/pid1" 2>/dev/null || true)
us=$(cat "$ST/unshare.pid" 2>/dev/null || true)
if [ -n "$p1" ] && [ -d /proc/$p1 ] && grep -q systemd /proc/$p1/comm 2>/dev/null; then
  timeout 20 nsenter -t "$p1" -m -p -n systemctl exit 2>/dev/null || true
  for i in $(seq 1 100); do [ -d /proc/$p1 ] || break; sleep 0.1; done
  [ -d /proc/$p1 ] && { echo "PID 1 $p1 still there: SIGKILL" >&2; kill -KILL "$p1"; }
fi
if [ -n "$us" ] && [ -d /proc/$us ]; then
  for i in $(seq 1 50); do [ -d /proc/$us ] || break; sleep 0.1; done
  [ -d /proc/$us ] && grep -q unshare /proc/$us/comm && kill -KILL "$us"
fi
# remove the (now empty) cgroup tree, deepest first
if [ -n "$CGHOST" ] && [ -d "$CGHOST" ]; then
  for i in $(seq 1 50); do
    find "$CGHOST" -depth -mindepth 0 -type d -exec rmdir {} \; 2>/dev/null
    [ -d "$CGHOST" ] || break; sleep 0.1
  done
fi
[ -n "$CGHOST" ] && [ -d "$CGHOST" ] && echo "cgroup $CGHOST not removed: $(cat $CGHOST/cgroup.procs 2>/dev/null | wc -l) procs" >&2
# ptylog exits by itself once unshare has exited; an orphan, it stays a zombie until the
# machine's init reaps it (seconds, in some containers): a zombie is gone for us
running() { [ -d /proc/$1 ] && ! grep -q '^State:.*zombie' /proc/$1/status 2>/dev/null; }
lr=$(cat "$ST/ptylog.pid" 2>/dev/null || true)
if [ -n "$lr" ]; then
  for i in $(seq 1 30); do running "$lr" || break; sleep 0.1; done
  running "$lr" && grep -q ptylog /proc/$lr/cmdline && kill "$lr"
fi
rm -f "$ST/pid1" "$ST/unshare.pid" "$ST/ptylog.pid" "$ST/cgroup"
echo "stopped" >&2
