"""The supervisor and its workers: what `graceful serve` runs on POSIX.

    early_worker.py its first worker, spawned before the command line is read
    start.py        its first steps: bind, lock, start the first workers (before its log)
    supervisor.py   the process systemd, Docker, a pid file and `graceful restart` know:
                    signals, the stop, the exit code, systemd's notifications, the pid file
    listening.py    the listening sockets, bound once and handed to every worker
    launch.py       how a worker is started (what it is given, and nothing else)
    workers.py      the ones that serve; a set started together; a dead one replaced
    rolling.py      a restart: new workers ready, then the old ones drain; queued, one at
                    a time, each with its own outcome
    control.py      the control socket `graceful restart` talks to
    metrics_folder.py  --metrics-bind: the folder the workers' metrics are merged from
    spawn.py, worker_process.py, reaper.py   a worker's process: its start, pipes, exit

A worker is the in-process runtime (graceful/lifecycle/runtime.py) serving the sockets it
was given; its side of the link is graceful/lifecycle/worker_link.py. `graceful.run` and
`Runtime` (the library) serve in-process, without a supervisor.
"""
