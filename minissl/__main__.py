"""``python -m minissl COMMAND ...`` (see ``minissl.cli``)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
