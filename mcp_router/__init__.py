"""mcp-router: an MCP server that routes LLM calls through one team policy."""

__all__ = ["__version__"]

__version__ = "0.1.0"
