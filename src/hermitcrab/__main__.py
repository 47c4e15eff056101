from hermitcrab.cli.entry import main

main()
