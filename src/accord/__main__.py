"""``python -m accord`` is the ``accord`` command."""

from accord.cli.app import main

main()
