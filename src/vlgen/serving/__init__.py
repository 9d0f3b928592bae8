"""vlgen.serving: the HTTP API behind `vlgen serve` and its page.

`app.create_app(settings)` builds the FastAPI app (models load there) from the routers in `routes/` (info,
caption, generate) sharing one `state.ServerState`; `settings.ServeSettings` holds every
option; `batching.MicroBatcher` batches concurrent caption requests; `generation.TextToImage` wraps SDXL and
`generation.GenerationQueue` admits, limits and cancels generation requests;
`process.ServerProcess` runs the real server as a child process (tests, benchmarks). Importing this package
imports none of them.
"""
