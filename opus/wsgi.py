"""WSGI entry point for external servers: ``gunicorn opus.wsgi:application``.

Settings come from the environment (``OPUS_*``, ``OPUS_CONFIG``). Run ``opus scheduler``
beside it; ``opus serve`` starts both.
"""

from opus.app import create_app

application = create_app()
