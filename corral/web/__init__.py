"""The dashboard and JSON API: ``create_app`` builds it, ``serve_in_thread`` serves it.

Reads go through the store's named queries and the job file (re-read when
it changes); every change goes through :mod:`corral.web.actions`.
"""

from corral.web.app import create_app
from corral.web.auth import Authenticator, Principal
from corral.web.server import WebServer, serve_in_thread

__all__ = ["Authenticator", "Principal", "WebServer", "create_app", "serve_in_thread"]
