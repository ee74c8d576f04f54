"""``qa-headpose serve``: an HTTP API for head poses and a live webcam page, on Starlette + uvicorn.

`app.create_app` builds the ASGI app (``POST /v1/poses``, ``GET /v1/health``,
``GET /v1/models``, ``GET /openapi.json`` and the page at ``/`` from ``static/``);
`app.run_server` serves it. `command` is the ``serve`` subcommand of the CLI.
Needs the ``serve`` extra: ``pip install -e .[serve]``.
"""
