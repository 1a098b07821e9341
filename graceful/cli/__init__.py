"""The command line: `graceful serve|check|restart|service|timeline|checkpoint` (main.py), the
options of serve and --config (serve_options.py, config_file.py), and one module for each
command that is more than a call (check.py, restart.py, service.py, timeline.py).

Empty on purpose: the supervisor imports config_file.py to re-read --config at a restart,
and must not pay for the rest of the command line."""
