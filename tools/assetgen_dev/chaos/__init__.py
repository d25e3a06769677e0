"""`make chaos`: the real system under provider faults and process kills, then every asset checked.

``providers`` serves fake providers of three families (Kie.ai jobs, Replicate, Luma) in a process of
their own that injects faults (``faults``) and remembers every task and the bytes it served;
``system`` starts NATS, SeaweedFS, PostgreSQL databases and the four services, each its own process,
under `make run`'s supervisor; ``disruptions`` kills and stops them on a schedule; ``check`` judges
the outcome; ``driver`` runs the whole thing (``python -m assetgen_dev.chaos --n 200``).
"""
