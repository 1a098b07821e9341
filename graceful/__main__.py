from graceful.cli.entry import main

main()
