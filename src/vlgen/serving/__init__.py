"""vlgen.serving: the HTTP API behind `vlgen serve` and its page.

`app.create_app(settings)` builds the FastAPI app (models load there); `settings.ServeSettings` holds every
option; `batching.MicroBatcher` batches concurrent caption requests; `generation.TextToImage` wraps SDXL;
`process.ServerProcess` runs the real server as a child process (tests, benchmarks). Importing this package
imports none of them.
"""
