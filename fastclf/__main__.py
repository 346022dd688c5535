from fastclf.cli.main import main

main()
