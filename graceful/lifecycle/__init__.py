"""A worker's lifecycle, in one process: build the app, serve, and on a stop the phases in
order (readiness off, stop accepting, drain, hooks, checkpoint, exit). runtime.py is the
lifecycle on one page; runner.py runs it on a loop of its own (graceful.run, and each
worker of the supervisor); worker_link.py is a worker's side of the link to its supervisor."""
