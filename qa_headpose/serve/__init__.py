"""``qa-headpose serve``: an HTTP API for head poses and a live webcam page, on Starlette + uvicorn (httptools).

`app` is the public face (`ServeConfig`, `create_app`, `run_server`); behind it one module per concern:
`config` (every default and limit), `errors` (error codes, the JSON error body), `limits` (uploads, bodies,
multipart, image checks), `schema` (the face JSON and the OpenAPI document from the same definitions), `pool`
(worker threads), `routes` (the Starlette app), `server` (uvicorn and the HTTP layer's limits). The CLI command
is `qa_headpose.cli.serve`. Needs the ``serve`` extra: ``pip install -e .[serve]``; docs/serve.md says what
the server guarantees against hostile clients.
"""
