"""``python -m gastown.devcluster.gastown_tools``: build gt, bd and dolt (if needed)."""

from gastown.devcluster.gastown_tools import main

main()
