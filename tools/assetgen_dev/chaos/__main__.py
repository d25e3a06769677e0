"""``python -m assetgen_dev.chaos``: see ``driver``."""

from assetgen_dev.chaos.driver import main

main()
