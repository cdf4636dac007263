"""`meshlab` command line: mirrors the Lab facade."""
import sys


def main(argv: list[str] | None = None) -> int:
    from . import __version__
    print(f"meshlab {__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
