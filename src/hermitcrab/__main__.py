from hermitcrab.cli.main import main

main()
