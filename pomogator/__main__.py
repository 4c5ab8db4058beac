from pomogator.cli import main

main()
