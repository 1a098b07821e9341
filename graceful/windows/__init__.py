"""graceful on Windows as a service: the process the SCM starts (service_host.py), what it
reports to the SCM (service_status.py) and its log file (service_log.py, log_retention.py).
The stop sources themselves are in graceful/bridge/."""
