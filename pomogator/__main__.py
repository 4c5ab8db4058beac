from pomogator.console import main

main()
