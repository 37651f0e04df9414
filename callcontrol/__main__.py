"""``python -m callcontrol`` is the ``callcontrol`` command."""

from callcontrol.cli import main

main()
