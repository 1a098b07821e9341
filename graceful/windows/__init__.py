"""graceful on Windows as a service: the process the SCM starts (service_host.py) and its
log file (service_log.py). The stop sources themselves are in graceful/bridge/."""
