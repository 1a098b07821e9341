from graceful import preload

preload.in_successor()

from graceful.cli import main  # noqa: E402

main()
