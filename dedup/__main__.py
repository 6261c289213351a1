"""``python -m dedup``, and the application file for ``spark-submit``: the ``dedup`` command."""

from dedup.cli import main

if __name__ == "__main__":
    main()
