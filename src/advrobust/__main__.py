"""``python -m advrobust`` (and ``torchrun -m advrobust``) run the CLI."""

from advrobust.cli.main import main

if __name__ == "__main__":
    main()
