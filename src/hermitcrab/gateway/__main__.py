"""`python -m hermitcrab.gateway`: the daemon process itself, started by `hermitcrab up`.

It skips the CLI framework entirely: the gateway is ready sooner and idles smaller.
"""

import os
import sys

# We use no pydantic plugins; looking for them scans every installed package's metadata.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from hermitcrab.config.paths import Paths  # noqa: E402
from hermitcrab.errors import HermitCrabError  # noqa: E402
from hermitcrab.gateway.server import serve  # noqa: E402

try:
    serve(Paths.from_env(), foreground="--quiet" not in sys.argv)
except HermitCrabError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
except KeyboardInterrupt:
    pass
