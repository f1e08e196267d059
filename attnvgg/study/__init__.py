"""The variant study: what attention costs (GMAC, latency, INT8 drop) and buys (top-1), and
whether deployed models still look where the original looked.

A stage package like export/ or calibration/: it imports the stages below it, models, data,
runners and shared modules; ``attnvgg.pipeline.run_study`` chains it with the run pipeline.
"""
