"""``python -m assetgen_storage`` runs the storage service."""

from assetgen_storage.main import main

main()
