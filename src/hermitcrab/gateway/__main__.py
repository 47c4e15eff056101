"""`python -m hermitcrab.gateway`: the daemon process itself, started by `hermitcrab up`.

It skips the CLI framework entirely: the gateway is ready sooner and idles smaller.
"""

import sys

from hermitcrab.config.paths import Paths
from hermitcrab.errors import HermitCrabError
from hermitcrab.gateway.server import serve

try:
    serve(Paths.from_env(), foreground="--quiet" not in sys.argv)
except HermitCrabError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
except KeyboardInterrupt:
    pass
