from factbridge.cli import main

main()
