"""The `hermitcrab` command's entry point. `hermitcrab up`, the command people wait on,
starts the daemon before the CLI framework (typer, rich: ~50 ms) is even imported."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["up"]:
        from hermitcrab.errors import HermitCrabError

        try:
            from hermitcrab.cli.daemon import up

            up(foreground=False)
        except HermitCrabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
        return
    from hermitcrab.cli.main import main as full

    full()


if __name__ == "__main__":
    main()
