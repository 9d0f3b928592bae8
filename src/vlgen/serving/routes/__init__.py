"""The API's routers, one module per area; each `router(state)` builds its routes for one app, because the
limits in their signatures (and so in the spec) are that server's settings.

    info.py      GET /, GET /health, GET /v1/models
    caption.py   POST /v1/caption
    generate.py  POST /v1/generate
"""
