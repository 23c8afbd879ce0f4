"""``metered-realtime demo`` and the helpers the examples share.

* :mod:`.run`: the demo (the embedded server, two Python peers, data and a tone);
  :mod:`.command`: its command-line flags and entry point.
* :mod:`.embedded`: :func:`embedded_server`, a server in this process with an app and an
  all-permission key (the demo, the examples' ``--server`` flag, the test suite).
* :mod:`.examples`: where the examples connect (``--url``/``--key``/``--server``).
* :mod:`.loopback`: :func:`restrict_ice_to_loopback`, WebRTC kept on 127.0.0.1.
* :mod:`.page` and :mod:`.site`: the page a browser tab joins from (package data
  ``page.html``), served by a small static site.
* :mod:`.pcm`: level and pitch of received audio; :mod:`.tasks`: background tasks.
"""

from .command import add_arguments, main
from .embedded import AppKeys, EmbeddedServer, embedded_server, provision_app
from .examples import add_connection_arguments, example_connection
from .loopback import LOOPBACK_ENV, loopback_requested, restrict_ice_to_loopback
from .page import find_js_sdk, serve_page
from .pcm import analyse_pcm, dbfs
from .run import DemoError, DemoOptions, run_demo
from .tasks import BackgroundTasks

__all__ = [
    "LOOPBACK_ENV",
    "AppKeys",
    "BackgroundTasks",
    "DemoError",
    "DemoOptions",
    "EmbeddedServer",
    "add_arguments",
    "add_connection_arguments",
    "analyse_pcm",
    "dbfs",
    "embedded_server",
    "example_connection",
    "find_js_sdk",
    "loopback_requested",
    "main",
    "provision_app",
    "restrict_ice_to_loopback",
    "run_demo",
    "serve_page",
]
