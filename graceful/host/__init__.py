"""What a process tells or asks of the machine it runs on: systemd's notifications, the pid
file, whether a process runs, the event loop's choice."""
