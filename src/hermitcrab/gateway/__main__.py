"""`python -m hermitcrab.gateway`: the daemon process itself, started by `hermitcrab up`.

It skips the CLI framework entirely: the gateway is ready sooner and idles smaller.
"""

import os
import sys

# We use no pydantic plugins; looking for them scans every installed package's metadata.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

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
