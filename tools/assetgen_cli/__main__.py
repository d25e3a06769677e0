"""`python -m assetgen_cli`."""

from assetgen_cli.main import main

main()
