"""The label build: its phases and orchestrator (:mod:`~.label_build`, ``bcls labels build``), the output folder
and resuming (:mod:`~.resume`), and the dask shard tasks (:mod:`~.scheduling`)."""
