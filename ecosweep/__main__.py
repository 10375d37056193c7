"""``python -m ecosweep``: see :mod:`ecosweep.cli`."""

from ecosweep.cli import main

if __name__ == "__main__":
    main()
