"""The segment explorer's static files (``streamseg/api/ui/``), served at ``/ui/``.

The files are public (they hold no data); every data call they make goes to
``/v1/*`` with the bearer token the page's login form keeps in sessionStorage.
Only the shipped files are served, by name, so no path reaches outside them.

>>> sorted(FILES)
['app.css', 'app.js', 'index.html']
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from streamseg.api.errors import ApiError

#: Served file name -> content type.
FILES = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
PREFIX = "/ui"


def is_ui_path(path: str) -> bool:
    """``/ui``, ``/ui/`` and the files under it (open without a token)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


class UiFiles:
    """The explorer's files, read once from the package."""

    def __init__(self) -> None:
        root = resources.files("streamseg.api").joinpath("ui")
        self._bodies = {name: root.joinpath(name).read_bytes() for name in FILES}

    async def get(self, request: web.Request, name: str = "") -> web.Response:
        """``/ui`` redirects to ``/ui/``, which is ``index.html``; other names are 404."""
        if request.path == PREFIX:
            # returned, not raised: the API middleware answers raised HTTP errors as JSON
            return web.Response(status=302, headers={"Location": PREFIX + "/"})
        name = name or "index.html"
        if name not in FILES:
            raise ApiError(404, "not_found", f"no file {name[:60]!r} in the explorer")
        return web.Response(body=self._bodies[name], content_type=FILES[name], charset="utf-8",
                            headers={"Cache-Control": "no-cache"})
