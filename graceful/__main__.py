from graceful.cli import main

main()
