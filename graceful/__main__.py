from graceful.cli.main import main

main()
