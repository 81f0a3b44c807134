"""Command line entry point (being written)."""


def main() -> int:
    return 0
