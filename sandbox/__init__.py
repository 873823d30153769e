"""PortOne V1 (formerly I'mport) compatible sandbox server.

Use :func:`sandbox.app.create_app` to build the ASGI app and
:func:`sandbox.testing.run_sandbox_in_thread` to serve it on loopback in tests.
"""

from sandbox.app import create_app
from sandbox.config import SandboxConfig

__all__ = ["SandboxConfig", "create_app"]
