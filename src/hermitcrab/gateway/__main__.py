"""`python -m hermitcrab.gateway [--quiet]`: the daemon in this process, for running it by
hand or under a service manager (`hermitcrab up` forks one instead).

It skips the CLI framework entirely: the gateway is ready sooner and idles smaller.
"""

import os
import sys

# We use no pydantic plugins; looking for them scans every installed package's metadata.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from hermitcrab.config.paths import Paths
from hermitcrab.gateway.server import run_daemon

sys.exit(run_daemon(Paths.from_env(), foreground="--quiet" not in sys.argv))
