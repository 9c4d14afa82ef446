"""WSGI entry point for external servers: ``gunicorn opus.wsgi:application``.

Settings come from the environment (``OPUS_*``, ``OPUS_CONFIG``). Run ``opus scheduler``
beside it; ``opus serve`` starts both.
"""

import os

from opus.app import create_app
from opus.cli import PRIVATE_UMASK
from opus.execution.sandbox import not_dumpable

os.umask(PRIVATE_UMASK)  # uploads and the SQLite files: the server account's alone
not_dumpable()  # this process's environment is not for a job's program to read
application = create_app()
