"""`python -m serving`: run the gateway under its HTTP server (serving/server.py: granian by default)."""

import sys

from serving.server import main

if __name__ == "__main__":
    sys.exit(main())
