"""The baseline of bench/uws.py: a bottle "hello world" served exactly like OPUS.

    .venv/bin/python bench/hello.py --port 8100 [--workers 2] [--worker-class gevent]
                                    [--threads 256]

It runs gunicorn in this process with the options ``opus serve`` uses (opus/serving.py,
``gunicorn_options``: worker class, threads, keep-alive, timeouts, no access log), so the
difference between the two servers is the OPUS application itself: parameter parsing,
validation, the database transaction and the event announcement.

Routes:
  GET  /hello              -> 200 "hello world"
  POST /rest/<activity>    -> reads the form like a job creation, then 303 to a job URL
                              (the baseline of "job creations/s")
"""

from __future__ import annotations

import argparse
import itertools
from typing import Any, Callable

import bottle

app = bottle.Bottle()
_counter = itertools.count()


@app.get("/")
@app.get("/hello")
def hello() -> str:
    bottle.response.content_type = "text/plain; charset=UTF-8"
    return "hello world\n"


@app.post("/rest/<activity>")
def create(activity: str) -> bottle.HTTPResponse:
    form = bottle.request.forms.decode()  # parse the body, as OPUS does
    _ = list(form.allitems())
    parts = bottle.request.urlparts
    location = f"{parts.scheme}://{parts.netloc}/rest/{activity}/{next(_counter):032x}"
    return bottle.HTTPResponse(status=303, headers={"Location": location})


def serve_like_opus(args: argparse.Namespace, load: Callable[[], Any],
                    loglevel: str = "info") -> None:
    """Run gunicorn in this process for the app ``load()`` gives, with the options of
    opus/serving.py ``gunicorn_options`` (without OPUS's connection caps); bench/ceiling.py
    uses it too, so the three servers of bench/uws.py differ only in their application."""
    from gunicorn.app.base import BaseApplication

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = {
                "bind": f"{args.host}:{args.port}",
                "workers": args.workers,
                "worker_class": args.worker_class,
                "threads": 1 if args.worker_class == "gevent" else args.threads,
                "worker_connections": 4096 + 64,
                "backlog": 2048,
                "timeout": 120,
                "graceful_timeout": 5,
                "keepalive": args.keepalive,
                "accesslog": None,
                "loglevel": loglevel,
                "control_socket_disable": True,
            }
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return load()

    Application().run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=256)
    parser.add_argument("--worker-class", choices=["gevent", "gthread"], default="gevent")
    parser.add_argument("--keepalive", type=int, default=75)
    serve_like_opus(parser.parse_args(), lambda: app)


if __name__ == "__main__":
    main()
