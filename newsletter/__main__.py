"""`python -m newsletter ...` is the `newsletter` command."""

from .cli import main

if __name__ == "__main__":  # not when a spawned process (producer_process.py) imports it
    main()
