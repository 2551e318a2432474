from dbtools.cli import main

main()
