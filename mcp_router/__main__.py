"""`python -m mcp_router` is the `mcp-router` command."""

from mcp_router.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
